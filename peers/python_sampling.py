"""Calls a tool that makes the upstream ask the client for sampling and elicitation,
answering both from callbacks, through the gateway (session-era client).

usage: python_sampling.py URL SAMPLING_TOOL ELICITATION_TOOL
Prints one JSON object: the text of both results.
"""

import asyncio
import json
import sys

import mcp_types as types
from mcp import Client


async def sampling(context, params):
    return types.CreateMessageResult(
        role="assistant",
        content=types.TextContent(type="text", text="sampled by the test client"),
        model="test-model",
        stop_reason="endTurn",
    )


async def elicitation(context, params):
    return types.ElicitResult(action="decline")


async def main(url: str, sampling_tool: str, elicitation_tool: str) -> dict:
    seen = {}
    async with Client(url, mode="legacy", sampling_callback=sampling, elicitation_callback=elicitation) as client:
        result = await client.call_tool(sampling_tool, {"prompt": "say hi", "maxTokens": 20})
        seen["sampling"] = " ".join(c.text for c in result.content if getattr(c, "text", None))
        result = await client.call_tool(elicitation_tool, {})
        seen["elicitation"] = " ".join(c.text for c in result.content if getattr(c, "text", None))
    return seen


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(*sys.argv[1:4]))))
