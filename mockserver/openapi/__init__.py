"""The spec loader and the validation layer: everything that reads OpenAPI documents."""
