"""Calls every 8.1 operation the mock serves through the official waldur-api-client 8.1.3.

Run in a throwaway venv that has only that client installed (tests/test_official_client_8_1.py
makes one): `python client_8_1_3_driver.py BASE_URL`. Prints one JSON object: per operation
the HTTP status and whether the client parsed the answer into its model (or the exception it
raised while parsing). The test decides what is expected.
"""

from __future__ import annotations

import json
import sys
from typing import Any
from uuid import UUID

import httpx
from waldur_api_client import AuthenticatedClient, Client, errors
from waldur_api_client.api.chat import chat_stream
from waldur_api_client.api.chat_messages import chat_messages_feedback, chat_messages_list
from waldur_api_client.api.chat_quota import chat_quota_set_quota, chat_quota_usage_retrieve
from waldur_api_client.api.chat_sessions import (
    chat_sessions_current_retrieve,
    chat_sessions_list,
    chat_sessions_retrieve,
)
from waldur_api_client.api.chat_system_prompts import (
    chat_system_prompts_activate,
    chat_system_prompts_count,
    chat_system_prompts_create,
    chat_system_prompts_deactivate,
    chat_system_prompts_destroy,
    chat_system_prompts_list,
    chat_system_prompts_partial_update,
    chat_system_prompts_retrieve,
    chat_system_prompts_update,
)
from waldur_api_client.api.chat_threads import (
    chat_threads_archive,
    chat_threads_cancel,
    chat_threads_list,
    chat_threads_retrieve,
    chat_threads_stats_retrieve,
    chat_threads_unarchive,
)
from waldur_api_client.api.chat_tools import chat_tools_execute
from waldur_api_client.api.marketplace_chat import (
    marketplace_chat_click,
    marketplace_chat_feedback,
    marketplace_chat_stream,
)
from waldur_api_client.models import (
    AnonymousChatClickRequestRequest,
    AnonymousChatFeedbackRequestRequest,
    AnonymousChatStreamRequestRequest,
    ChatRequestRequest,
    FeedbackCategoryEnum,
    MessageFeedbackRequest,
    PatchedSystemPromptRequest,
    SetTokenQuotaRequest,
    SystemPromptRequest,
    ThreadSessionRequest,
    ToolExecuteRequest,
)


def outcome(call: Any) -> dict[str, Any]:
    try:
        response = call()
    except errors.UnexpectedStatus as exc:  # the client has no branch for this status
        return {"status": exc.status_code, "parsed": False, "error": "UnexpectedStatus", "body": exc.content.decode()}
    except Exception as exc:  # the client's own parsing failed: report it, the test judges
        return {"status": None, "parsed": False, "error": f"{type(exc).__name__}: {exc}"}
    return {
        "status": int(response.status_code),
        "parsed": response.parsed is not None,
        "body": response.content.decode(),
    }


def main(base: str) -> dict[str, Any]:
    alice = AuthenticatedClient(base_url=base, token="alice-token", prefix="Token")
    staff = AuthenticatedClient(base_url=base, token="staff-token", prefix="Token")
    results: dict[str, Any] = {}
    stream = outcome(lambda: chat_stream.sync_detailed(client=alice, body=ChatRequestRequest(input_="hello")))
    results["chat_stream"] = stream
    records = [json.loads(line) for line in stream.get("body", "").splitlines() if line]
    thread = UUID(records[0]["m"]["thread_uuid"])
    answer = UUID(records[-1]["m"]["assistant_message_uuid"])
    session = chat_sessions_current_retrieve.sync(client=alice)
    results["chat_sessions_current_retrieve"] = outcome(
        lambda: chat_sessions_current_retrieve.sync_detailed(client=alice)
    )
    results["chat_sessions_list"] = outcome(lambda: chat_sessions_list.sync_detailed(client=alice))
    results["chat_sessions_retrieve"] = outcome(
        lambda: chat_sessions_retrieve.sync_detailed(session.uuid, client=alice)  # type: ignore[union-attr]
    )
    results["chat_threads_list"] = outcome(
        lambda: chat_threads_list.sync_detailed(client=alice, total_tokens_min=1, has_feedback=False)
    )
    results["chat_threads_retrieve"] = outcome(lambda: chat_threads_retrieve.sync_detailed(thread, client=alice))
    results["chat_threads_stats_retrieve"] = outcome(lambda: chat_threads_stats_retrieve.sync_detailed(client=alice))
    results["chat_threads_cancel"] = outcome(
        lambda: chat_threads_cancel.sync_detailed(thread, client=alice, body=ThreadSessionRequest())
    )
    results["chat_threads_archive"] = outcome(lambda: chat_threads_archive.sync_detailed(thread, client=alice))
    results["chat_threads_unarchive"] = outcome(lambda: chat_threads_unarchive.sync_detailed(thread, client=alice))
    results["chat_messages_list"] = outcome(
        lambda: chat_messages_list.sync_detailed(client=alice, thread=thread, include_history=True)
    )
    feedback = MessageFeedbackRequest(score=False, comment="wrong", category=FeedbackCategoryEnum.INACCURATE)
    results["chat_messages_feedback"] = outcome(
        lambda: chat_messages_feedback.sync_detailed(answer, client=alice, body=feedback)
    )
    results["chat_messages_list_staff"] = outcome(lambda: chat_messages_list.sync_detailed(client=staff, thread=thread))
    owner = session.user  # type: ignore[union-attr]
    user_uuid = owner if isinstance(owner, UUID) else UUID(str(owner))
    results["chat_quota_usage_retrieve"] = outcome(
        lambda: chat_quota_usage_retrieve.sync_detailed(client=staff, user_uuid=user_uuid)
    )
    results["chat_quota_set_quota"] = outcome(
        lambda: chat_quota_set_quota.sync_detailed(
            client=staff, body=SetTokenQuotaRequest(user_uuid=user_uuid, daily_limit=1000)
        )
    )
    results["chat_tools_execute"] = outcome(
        lambda: chat_tools_execute.sync_detailed(client=alice, body=ToolExecuteRequest(tool="show_user_resources"))
    )
    results.update(system_prompts(staff))
    results.update(anonymous(base))
    return results


def system_prompts(staff: AuthenticatedClient) -> dict[str, Any]:
    """CRUD, activate/deactivate (the client sends a body with both) and the HEAD count, as staff."""
    results: dict[str, Any] = {}
    body = SystemPromptRequest(name="driver", description="made by the driver", custom_instructions="Be brief.")
    created = outcome(lambda: chat_system_prompts_create.sync_detailed(client=staff, body=body))
    results["chat_system_prompts_create"] = created
    prompt = UUID(json.loads(created["body"])["uuid"])
    results["chat_system_prompts_list"] = outcome(lambda: chat_system_prompts_list.sync_detailed(client=staff))
    results["chat_system_prompts_retrieve"] = outcome(
        lambda: chat_system_prompts_retrieve.sync_detailed(prompt, client=staff)
    )
    results["chat_system_prompts_update"] = outcome(
        lambda: chat_system_prompts_update.sync_detailed(prompt, client=staff, body=body)
    )
    patch = PatchedSystemPromptRequest(description="patched by the driver")
    results["chat_system_prompts_partial_update"] = outcome(
        lambda: chat_system_prompts_partial_update.sync_detailed(prompt, client=staff, body=patch)
    )
    results["chat_system_prompts_activate"] = outcome(
        lambda: chat_system_prompts_activate.sync_detailed(prompt, client=staff, body=body)
    )
    results["chat_system_prompts_deactivate"] = outcome(
        lambda: chat_system_prompts_deactivate.sync_detailed(prompt, client=staff, body=body)
    )
    results["chat_system_prompts_count"] = outcome(lambda: chat_system_prompts_count.sync_detailed(client=staff))
    results["chat_system_prompts_destroy"] = outcome(
        lambda: chat_system_prompts_destroy.sync_detailed(prompt, client=staff)
    )
    return results


def anonymous(base: str) -> dict[str, Any]:
    """The marketplace chat, no token: switched on through the mock's control API first."""
    httpx.patch(f"{base}/__mock__/config", json={"enabled_roles": "anonymous"}).raise_for_status()
    visitor = Client(base_url=base)
    results: dict[str, Any] = {}
    ask = AnonymousChatStreamRequestRequest(input_="recommend an offering", session_id="driver-session-1")
    stream = outcome(lambda: marketplace_chat_stream.sync_detailed(client=visitor, body=ask))  # type: ignore[arg-type]
    results["marketplace_chat_stream"] = stream
    records = [json.loads(line) for line in stream.get("body", "").splitlines() if line]
    meta = records[0]["m"]
    interaction, token = UUID(meta["interaction_uuid"]), meta["feedback_token"]
    feedback = AnonymousChatFeedbackRequestRequest(
        interaction_uuid=interaction, feedback_token=token, score=-1, category=FeedbackCategoryEnum.INCOMPLETE
    )
    results["marketplace_chat_feedback"] = outcome(
        lambda: marketplace_chat_feedback.sync_detailed(client=visitor, body=feedback)  # type: ignore[arg-type]
    )
    offering = next(r for r in records if r.get("k") == "homeport_nav")["links"][0]["url"].split("/")[-2]
    click = AnonymousChatClickRequestRequest(
        interaction_uuid=interaction, feedback_token=token, offering_uuid=UUID(offering)
    )
    results["marketplace_chat_click"] = outcome(
        lambda: marketplace_chat_click.sync_detailed(client=visitor, body=click)  # type: ignore[arg-type]
    )
    return results


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
