"""The playground page's static files (HTML, CSS, JS), shipped as package data; served by mockserver.control.ui."""
