// A small editor for the tests: the official ACP SDK's client app, with
// real file and terminal handlers on the local disk, connected to a
// spawned `anvil-router acp`.
import { spawn } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { Readable, Writable } from "node:stream";
import * as acp from "@agentclientprotocol/sdk";

export const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (run through go test -run TestACPEditor)`);
  return v;
};

// The SDK's zod schemas, generated from the protocol's JSON schema: the
// SDK checks what the agent sends to the client with them; the tests check
// the agent's answers with them too.
export const schema = await import(new URL("./node_modules/@agentclientprotocol/sdk/dist/v1/schema/zod.gen.js", import.meta.url));

export function startAgent(config, { key = env("ANVIL_KEY") } = {}) {
  const proc = spawn(env("ANVIL_ACP_BIN"), ["acp", "--config", config, "--router", env("ANVIL_BASE_URL"), "--log-level", "debug"], {
    stdio: ["pipe", "pipe", "pipe"],
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ANVIL_ROUTER_TOKEN: env("ANVIL_TOKEN"), ANVIL_API_KEY: key },
  });
  let stderr = "";
  proc.stderr.on("data", (d) => { stderr += d; });
  const exited = new Promise((resolve) => proc.on("exit", (code, signal) => resolve({ code, signal })));
  return { proc, exited, stderr: () => stderr };
}

export async function stopAgent(agent) {
  agent.proc.stdin.end();
  const res = await Promise.race([agent.exited, new Promise((r) => setTimeout(() => r(null), 5000))]);
  if (res === null) agent.proc.kill("SIGKILL");
  return res;
}

// Editor state a test inspects: updates by session, permission requests
// and the answers queued for them, file and terminal calls.
export class Editor {
  constructor() {
    this.updates = new Map();
    this.permissionRequests = [];
    this.permissionAnswers = [];
    this.calls = [];
    this.terminals = new Map();
    this.onUpdate = null;
    let next = 0;
    this.app = acp.client({ name: "anvil-test-editor" })
      .onNotification(acp.methods.client.session.update, ({ params }) => {
        const list = this.updates.get(params.sessionId) ?? [];
        list.push(params.update);
        this.updates.set(params.sessionId, list);
        this.onUpdate?.(params);
      })
      .onRequest(acp.methods.client.session.requestPermission, ({ params }) => {
        this.permissionRequests.push(params);
        const optionId = this.permissionAnswers.shift();
        if (!optionId) return { outcome: { outcome: "cancelled" } };
        return { outcome: { outcome: "selected", optionId } };
      })
      .onRequest(acp.methods.client.fs.readTextFile, async ({ params }) => {
        this.calls.push(["read", params.path]);
        let text = await readFile(params.path, "utf8");
        if (params.line != null || params.limit != null) {
          const lines = text.split("\n");
          const from = (params.line ?? 1) - 1;
          text = lines.slice(from, params.limit != null ? from + params.limit : undefined).join("\n");
        }
        return { content: text };
      })
      .onRequest(acp.methods.client.fs.writeTextFile, async ({ params }) => {
        this.calls.push(["write", params.path]);
        await writeFile(params.path, params.content);
        return {};
      })
      .onRequest(acp.methods.client.terminal.create, ({ params }) => {
        const id = `term-${++next}`;
        this.calls.push(["terminal", params.command, params.args, params.cwd]);
        const child = spawn(params.command, params.args ?? [], { cwd: params.cwd });
        const t = { output: "", exit: null };
        child.stdout.on("data", (d) => { t.output += d; });
        child.stderr.on("data", (d) => { t.output += d; });
        t.done = new Promise((resolve) => child.on("exit", (code, signal) => {
          t.exit = { exitCode: code, signal };
          resolve(t.exit);
        }));
        t.child = child;
        this.terminals.set(id, t);
        return { terminalId: id };
      })
      .onRequest(acp.methods.client.terminal.output, ({ params }) => {
        const t = this.terminals.get(params.terminalId);
        return { output: t.output, truncated: false, exitStatus: t.exit };
      })
      .onRequest(acp.methods.client.terminal.waitForExit, async ({ params }) => this.terminals.get(params.terminalId).done)
      .onRequest(acp.methods.client.terminal.kill, ({ params }) => { this.terminals.get(params.terminalId).child.kill(); return {}; })
      .onRequest(acp.methods.client.terminal.release, ({ params }) => {
        this.calls.push(["release", params.terminalId]);
        this.terminals.get(params.terminalId)?.child.kill();
        this.terminals.delete(params.terminalId);
        return {};
      });
  }

  // connect runs op with a ClientContext on the agent's stdio.
  connect(agent, op) {
    const stream = acp.ndJsonStream(Writable.toWeb(agent.proc.stdin), Readable.toWeb(agent.proc.stdout));
    return this.app.connectWith(stream, op);
  }

  sessionUpdates(id) { return this.updates.get(id) ?? []; }
}

export const fullCaps = { fs: { readTextFile: true, writeTextFile: true }, terminal: true };

export async function initialize(ctx, clientCapabilities = fullCaps) {
  const res = await ctx.request(acp.methods.agent.initialize, { protocolVersion: acp.PROTOCOL_VERSION, clientCapabilities });
  schema.zInitializeResponse.parse(res);
  return res;
}

export function text(updates, kind) {
  return updates.filter((u) => u.sessionUpdate === kind).map((u) => u.content.text).join("");
}
