"""Drives the official Python MCP SDK against a gateway endpoint and prints what it
saw as one JSON object, for the gateway's interop tests.

usage: python_client.py URL MODE TOOL RESOURCE_PREFIX
  MODE is "auto" (server/discover first, initialize as fallback) or "legacy".
"""

import asyncio
import json
import sys

from mcp import Client


async def main(url: str, mode: str, tool: str) -> dict:
    seen: dict = {"mode": mode}
    async with Client(url, mode=mode) as client:
        tools = await client.list_tools()
        seen["tools"] = [t.name for t in tools.tools]
        result = await client.call_tool(tool, {"message": "hi"})
        seen["call"] = [c.text for c in result.content if getattr(c, "text", None) is not None]
        resources = await client.list_resources()
        seen["resources"] = [str(r.uri) for r in resources.resources]
        # The first upstream resource (the gateway lists its own `gateway://` ones too).
        upstream = [r for r in resources.resources if not str(r.uri).startswith("gateway://")]
        if upstream:
            read = await client.read_resource(upstream[0].uri)
            seen["read"] = str(read.contents[0].uri)
        prompts = await client.list_prompts()
        seen["prompts"] = [p.name for p in prompts.prompts]
        simple = [p for p in prompts.prompts if not any(a.required for a in (p.arguments or []))]
        if simple:
            got = await client.get_prompt(simple[0].name, {})
            seen["prompt_messages"] = len(got.messages)
    return seen


if __name__ == "__main__":
    url, mode, tool = sys.argv[1], sys.argv[2], sys.argv[3]
    print(json.dumps(asyncio.run(main(url, mode, tool))))
