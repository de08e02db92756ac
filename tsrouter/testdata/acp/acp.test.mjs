// The official ACP TypeScript SDK as the editor against `anvil-router acp`,
// the real router and fake serves. Run by TestACPEditor.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, writeFile, realpath } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as acp from "@agentclientprotocol/sdk";
import { Editor, env, fullCaps, initialize, schema, startAgent, stopAgent, text } from "./editor.mjs";

const TEXT = env("ANVIL_TEXT");
const REASONING = env("ANVIL_REASONING");
const PREFIX = env("ANVIL_TOOL_PREFIX");
const MAIN = env("ANVIL_ACP_CONFIG_MAIN");

const workspace = async () => realpath(await mkdtemp(join(tmpdir(), "acp-ws-")));
const say = (s) => [{ type: "text", text: s }];
const call = (tool, args) => say(`please\nfake:call ${tool} ${JSON.stringify(args)}`);

async function prompt(ctx, sessionId, blocks) {
  const res = await ctx.request(acp.methods.agent.session.prompt, { sessionId, prompt: blocks });
  schema.zPromptResponse.parse(res);
  return res;
}

async function newSession(ctx, cwd, mcpServers = []) {
  const res = await ctx.request(acp.methods.agent.session.new, { cwd, mcpServers });
  schema.zNewSessionResponse.parse(res);
  return res;
}

test("initialize reports the configured agent and capabilities", async () => {
  const agent = startAgent(MAIN);
  const editor = new Editor();
  try {
    await editor.connect(agent, async (ctx) => {
      const res = await initialize(ctx);
      assert.equal(res.protocolVersion, 1);
      assert.equal(res.agentInfo.name, "anvil-router");
      assert.equal(res.agentInfo.version, "test");
      assert.deepEqual(res.agentCapabilities.promptCapabilities, { image: false, audio: false, embeddedContext: false });
      assert.equal(res.agentCapabilities.loadSession, true);
      assert.deepEqual(res.authMethods, []);
    });
  } finally {
    await stopAgent(agent);
  }
});

test("a turn streams thinking and text, and ends with end_turn", async () => {
  const agent = startAgent(MAIN);
  const editor = new Editor();
  try {
    await editor.connect(agent, async (ctx) => {
      await initialize(ctx);
      const { sessionId, modes } = await newSession(ctx, await workspace());
      assert.equal(modes.currentModeId, "ask");
      const res = await prompt(ctx, sessionId, say("fake:text"));
      assert.equal(res.stopReason, "end_turn");
      const ups = editor.sessionUpdates(sessionId);
      assert.equal(text(ups, "agent_thought_chunk"), REASONING);
      assert.equal(text(ups, "agent_message_chunk"), TEXT);
      assert.ok(ups.filter((u) => u.sessionUpdate === "agent_message_chunk").length > 1, "text arrives in several chunks");
    });
  } finally {
    await stopAgent(agent);
  }
});

test("a read is auto-allowed; an edit asks, is granted once, then rejected", async () => {
  const agent = startAgent(MAIN);
  const editor = new Editor();
  const ws = await workspace();
  await writeFile(join(ws, "notes.txt"), "old line\n");
  try {
    await editor.connect(agent, async (ctx) => {
      await initialize(ctx);
      const { sessionId } = await newSession(ctx, ws);

      let res = await prompt(ctx, sessionId, call("read_file", { path: "notes.txt" }));
      assert.equal(res.stopReason, "end_turn");
      assert.equal(editor.permissionRequests.length, 0, "reads are in auto_allow");
      assert.deepEqual(editor.calls[0], ["read", join(ws, "notes.txt")]);
      let ups = editor.sessionUpdates(sessionId);
      const read = ups.find((u) => u.sessionUpdate === "tool_call");
      assert.equal(read.kind, "read");
      assert.ok(ups.some((u) => u.sessionUpdate === "tool_call_update" && u.toolCallId === read.toolCallId && u.status === "completed"));
      assert.ok(text(ups, "agent_message_chunk").includes(PREFIX + "old line"), "the model got the file's content");

      editor.permissionAnswers.push("allow-once");
      res = await prompt(ctx, sessionId, call("write_file", { path: "notes.txt", content: "new line\n" }));
      assert.equal(res.stopReason, "end_turn");
      assert.equal(editor.permissionRequests.length, 1);
      const ask = editor.permissionRequests[0];
      assert.equal(ask.toolCall.kind, "edit");
      assert.deepEqual(ask.options.map((o) => o.kind), ["allow_once", "allow_always", "reject_once", "reject_always"]);
      const diff = ask.toolCall.content.find((c) => c.type === "diff");
      assert.deepEqual([diff.path, diff.oldText, diff.newText], [join(ws, "notes.txt"), "old line\n", "new line\n"]);
      assert.equal(await readFile(join(ws, "notes.txt"), "utf8"), "new line\n");
      const edited = editor.sessionUpdates(sessionId).find((u) => u.sessionUpdate === "tool_call_update" && u.toolCallId === ask.toolCall.toolCallId && u.status === "completed");
      assert.deepEqual(edited.content.find((c) => c.type === "diff"), diff, "the finished edit shows the same diff");

      editor.permissionAnswers.push("reject-once");
      res = await prompt(ctx, sessionId, call("write_file", { path: "notes.txt", content: "rejected\n" }));
      assert.equal(res.stopReason, "end_turn");
      assert.equal(editor.permissionRequests.length, 2, "allow-once is not remembered");
      assert.equal(await readFile(join(ws, "notes.txt"), "utf8"), "new line\n", "a rejected edit leaves the file alone");
      ups = editor.sessionUpdates(sessionId);
      const failed = ups.filter((u) => u.sessionUpdate === "tool_call_update" && u.status === "failed");
      assert.equal(failed.length, 1);

      // Outside the working directory nothing is read, and nobody is asked.
      res = await prompt(ctx, sessionId, call("read_file", { path: "../../etc/passwd" }));
      assert.equal(res.stopReason, "end_turn");
      assert.equal(editor.calls.filter((c) => c[0] === "read" && !c[1].startsWith(ws)).length, 0);
      assert.ok(text(editor.sessionUpdates(sessionId), "agent_message_chunk").includes("outside the working directory"));
    });
  } finally {
    await stopAgent(agent);
  }
});

test("search runs without asking; the read-only mode refuses edits without asking", async () => {
  const agent = startAgent(MAIN);
  const editor = new Editor();
  const ws = await workspace();
  await writeFile(join(ws, "main.go"), "package main\n\nfunc needle() {}\n");
  try {
    await editor.connect(agent, async (ctx) => {
      await initialize(ctx);
      const { sessionId } = await newSession(ctx, ws);
      await prompt(ctx, sessionId, call("search", { pattern: "func need" }));
      assert.equal(editor.permissionRequests.length, 0, "search is in auto_allow");
      let ups = editor.sessionUpdates(sessionId);
      assert.equal(ups.find((u) => u.sessionUpdate === "tool_call").kind, "search");
      assert.ok(text(ups, "agent_message_chunk").includes(PREFIX + "main.go:3: func needle() {}"));

      await ctx.request(acp.methods.agent.session.setMode, { sessionId, modeId: "read-only" });
      ups = editor.sessionUpdates(sessionId);
      assert.deepEqual(ups.at(-1), { sessionUpdate: "current_mode_update", currentModeId: "read-only" });
      await prompt(ctx, sessionId, call("write_file", { path: "main.go", content: "gone" }));
      assert.equal(editor.permissionRequests.length, 0, "read-only refuses without asking");
      assert.equal(await readFile(join(ws, "main.go"), "utf8"), "package main\n\nfunc needle() {}\n");
      await assert.rejects(ctx.request(acp.methods.agent.session.setMode, { sessionId, modeId: "yolo" }), /unknown mode/);
    });
  } finally {
    await stopAgent(agent);
  }
});

test("a command runs in an editor terminal after permission", async () => {
  const agent = startAgent(MAIN);
  const editor = new Editor();
  const ws = await workspace();
  try {
    await editor.connect(agent, async (ctx) => {
      await initialize(ctx);
      const { sessionId } = await newSession(ctx, ws);
      editor.permissionAnswers.push("allow-always");
      const res = await prompt(ctx, sessionId, call("run_command", { command: "echo hello-from-terminal; pwd" }));
      assert.equal(res.stopReason, "end_turn");
      const term = editor.calls.find((c) => c[0] === "terminal");
      assert.deepEqual(term, ["terminal", "/bin/sh", ["-c", "echo hello-from-terminal; pwd"], ws]);
      assert.ok(editor.calls.some((c) => c[0] === "release"), "the terminal is released");
      const ups = editor.sessionUpdates(sessionId);
      assert.equal(ups.find((u) => u.sessionUpdate === "tool_call").kind, "execute");
      assert.ok(ups.some((u) => u.sessionUpdate === "tool_call_update" && u.content?.some((c) => c.type === "terminal")));
      const said = text(ups, "agent_message_chunk");
      assert.ok(said.includes("hello-from-terminal") && said.includes(ws) && said.includes("[exit status 0]"), said);

      // allow-always is remembered for the session.
      await prompt(ctx, sessionId, call("run_command", { command: "true" }));
      assert.equal(editor.permissionRequests.length, 1);
    });
  } finally {
    await stopAgent(agent);
  }
});

test("session/cancel ends the turn at once with cancelled", async () => {
  const agent = startAgent(env("ANVIL_ACP_CONFIG_SLOW"));
  const editor = new Editor();
  try {
    await editor.connect(agent, async (ctx) => {
      await initialize(ctx);
      const { sessionId } = await newSession(ctx, await workspace());
      let first;
      const started = new Promise((resolve) => { first = resolve; });
      editor.onUpdate = (n) => { if (n.update.sessionUpdate === "agent_message_chunk") first(); };
      const t0 = Date.now();
      const turn = prompt(ctx, sessionId, say("fake:text"));
      await started;
      await ctx.notify(acp.methods.agent.session.cancel, { sessionId });
      const res = await turn;
      assert.equal(res.stopReason, "cancelled");
      assert.ok(Date.now() - t0 < 2000, "the turn did not run to its end (3 s)");
      assert.ok(text(editor.sessionUpdates(sessionId), "agent_message_chunk").length < "one two three four five six seven eight nine ten".length);
    });
  } finally {
    await stopAgent(agent);
  }
});

test("session/load after a restart replays the history", async () => {
  const ws = await workspace();
  await writeFile(join(ws, "a.txt"), "alpha\n");
  let sessionId;
  let agent = startAgent(MAIN);
  try {
    await new Editor().connect(agent, async (ctx) => {
      await initialize(ctx);
      ({ sessionId } = await newSession(ctx, ws));
      await prompt(ctx, sessionId, say("fake:text"));
      await prompt(ctx, sessionId, call("read_file", { path: "a.txt" }));
    });
  } finally {
    await stopAgent(agent);
  }
  agent = startAgent(MAIN);
  const editor = new Editor();
  try {
    await editor.connect(agent, async (ctx) => {
      await initialize(ctx);
      const res = await ctx.request(acp.methods.agent.session.load, { sessionId, cwd: ws, mcpServers: [] });
      schema.zLoadSessionResponse.parse(res);
      const ups = editor.sessionUpdates(sessionId);
      assert.equal(text(ups, "user_message_chunk"), "fake:text" + `please\nfake:call read_file {"path":"a.txt"}`);
      assert.ok(text(ups, "agent_message_chunk").startsWith(TEXT));
      assert.ok(text(ups, "agent_message_chunk").includes(PREFIX + "alpha"));
      // One model request for the text turn, two for the tool round trip.
      assert.equal(text(ups, "agent_thought_chunk"), REASONING.repeat(3));
      assert.ok(ups.some((u) => u.sessionUpdate === "tool_call" && u.kind === "read"));
      // The loaded session goes on.
      const next = await prompt(ctx, sessionId, say("fake:text"));
      assert.equal(next.stopReason, "end_turn");
      await assert.rejects(ctx.request(acp.methods.agent.session.load, { sessionId: "sess_00000000000000000000000000000000", cwd: ws, mcpServers: [] }), /no session/);
    });
  } finally {
    await stopAgent(agent);
  }
});

test("an MCP server's tool is called through the bridge", async () => {
  const agent = startAgent(MAIN);
  const editor = new Editor();
  const server = fileURLToPath(new URL("./node_modules/@modelcontextprotocol/server-everything/dist/index.js", import.meta.url));
  try {
    await editor.connect(agent, async (ctx) => {
      await initialize(ctx);
      const mcp = { name: "everything", command: process.execPath, args: [server, "stdio"], env: [{ name: "FROM_EDITOR", value: "yes" }] };
      const { sessionId } = await newSession(ctx, await workspace(), [mcp]);
      editor.permissionAnswers.push("allow-once");
      const res = await prompt(ctx, sessionId, call("mcp__everything__echo", { message: "through the bridge" }));
      assert.equal(res.stopReason, "end_turn");
      assert.equal(editor.permissionRequests[0].toolCall.kind, "other", "MCP tools ask under ask_always");
      assert.ok(text(editor.sessionUpdates(sessionId), "agent_message_chunk").includes(PREFIX + "Echo: through the bridge"));
      // The server runs with the editor's env and without the agent's
      // credentials.
      editor.permissionAnswers.push("allow-once");
      await prompt(ctx, sessionId, call("mcp__everything__get-env", {}));
      const said = text(editor.sessionUpdates(sessionId), "agent_message_chunk");
      assert.ok(said.includes('"FROM_EDITOR": "yes"'), "the editor's env reaches the server");
      assert.ok(!said.includes(env("ANVIL_TOKEN")) && !said.includes(env("ANVIL_KEY")), "no credential reaches the MCP server");
      // Servers outside allowed_servers are refused.
      await assert.rejects(newSession(ctx, await workspace(), [{ ...mcp, name: "other" }]), /allowed_servers/);
    });
  } finally {
    await stopAgent(agent);
  }
});

test("a key that may not use the model gets a clean error, and the agent goes on", async () => {
  const agent = startAgent(env("ANVIL_ACP_CONFIG_FORBIDDEN"));
  const editor = new Editor();
  try {
    await editor.connect(agent, async (ctx) => {
      await initialize(ctx);
      const { sessionId } = await newSession(ctx, await workspace());
      await assert.rejects(prompt(ctx, sessionId, say("fake:text")), (err) => {
        assert.match(err.message, /403/);
        assert.ok(!err.message.includes(env("ANVIL_KEY")), "the key never appears in errors");
        return true;
      });
      // Still alive: another session opens.
      await newSession(ctx, await workspace());
    });
    assert.ok(!agent.stderr().includes(env("ANVIL_KEY")) && !agent.stderr().includes(env("ANVIL_TOKEN")), "no secret in the log");
  } finally {
    await stopAgent(agent);
  }
});

test("unknown methods and malformed lines get JSON-RPC errors; the session goes on", async () => {
  const agent = startAgent(MAIN);
  const lines = [];
  let buf = "";
  const waiters = [];
  agent.proc.stdout.on("data", (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      lines.push(JSON.parse(line)); // stdout carries only JSON-RPC
      waiters.splice(0).forEach((w) => w());
    }
  });
  const send = (s) => agent.proc.stdin.write(s + "\n");
  const next = async (pred) => {
    for (;;) {
      const m = lines.find(pred);
      if (m) return m;
      await new Promise((r) => waiters.push(r));
    }
  };
  try {
    send("this is not json");
    let m = await next((l) => l.error?.code === -32700);
    assert.equal(m.id, null);
    send(JSON.stringify({ jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: 1, clientCapabilities: fullCaps } }));
    schema.zInitializeResponse.parse((await next((l) => l.id === 1)).result);
    const ws = await workspace();
    send(JSON.stringify({ jsonrpc: "2.0", id: 2, method: "session/new", params: { cwd: ws, mcpServers: [] } }));
    const sessionId = (await next((l) => l.id === 2)).result.sessionId;
    send(JSON.stringify({ jsonrpc: "2.0", id: 3, method: "session/teleport", params: {} }));
    assert.equal((await next((l) => l.id === 3)).error.code, -32601);
    send(JSON.stringify({ jsonrpc: "2.0", id: 4, method: "session/prompt", params: { sessionId } }));
    assert.equal((await next((l) => l.id === 4)).error.code, -32602);
    send('{"jsonrpc":"2.0","id":5,"method":"session/prompt","params":{"sessionId":');
    send(JSON.stringify({ jsonrpc: "1.0", id: 6, method: "initialize" }));
    assert.equal((await next((l) => l.id === 6)).error.code, -32600);
    send(JSON.stringify({ jsonrpc: "2.0", id: 7, method: "session/prompt", params: { sessionId, prompt: say("fake:text") } }));
    const done = await next((l) => l.id === 7);
    assert.equal(done.result.stopReason, "end_turn");
    assert.equal(lines.filter((l) => l.error?.code === -32700).length, 2);
  } finally {
    await stopAgent(agent);
  }
});
