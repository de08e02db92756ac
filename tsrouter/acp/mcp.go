package acp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// The MCP bridge: the stdio MCP servers an editor passes in session/new or
// session/load are started for the session (within server_spawn_timeout),
// their tools offered to the model as mcp__<server>__<tool>, and calls
// made over MCP with the official Go SDK. The tools run with kind "other":
// what a server says about its own tools is not trusted to skip a
// permission question.

type mcpBridge struct {
	conns []*mcpConn
}

type mcpConn struct {
	server string
	cs     *mcp.ClientSession
	tools  []*mcp.Tool
}

var toolNameUnsafe = regexp.MustCompile(`[^A-Za-z0-9_-]`)

func (a *Agent) startMCP(ctx context.Context, s *session, servers []mcpServer) error {
	if len(servers) == 0 {
		return nil
	}
	cfg := a.opts.Config
	if !cfg.Capabilities.MCP {
		a.log.Warn("acp: the editor passed MCP servers but acp.capabilities.mcp is off; ignoring them", "session", s.id)
		return nil
	}
	if len(servers) > cfg.MCP.MaxConnectionsPerSession {
		return rpcErr(codeInvalidParams, "%d MCP servers passed; at most %d per session (acp.mcp.max_connections_per_session)", len(servers), cfg.MCP.MaxConnectionsPerSession)
	}
	for _, srv := range servers {
		if srv.Type != "" && srv.Type != "stdio" {
			return rpcErr(codeInvalidParams, "MCP server %q: transport %q is not supported (stdio only)", srv.Name, srv.Type)
		}
		if len(cfg.MCP.AllowedServers) > 0 && !slices.Contains(cfg.MCP.AllowedServers, srv.Name) {
			return rpcErr(codeInvalidParams, "MCP server %q is not in acp.mcp.allowed_servers", srv.Name)
		}
		if srv.Command == "" {
			return rpcErr(codeInvalidParams, "MCP server %q has no command", srv.Name)
		}
	}
	bridge := &mcpBridge{}
	client := mcp.NewClient(&mcp.Implementation{Name: cfg.Agent.Name, Version: a.opts.Version}, nil)
	for _, srv := range servers {
		conn, err := a.spawnMCP(ctx, client, s.cwd, srv)
		if err != nil {
			bridge.close()
			return rpcErr(codeInternalError, "MCP server %q: %v", srv.Name, err)
		}
		bridge.conns = append(bridge.conns, conn)
		a.log.Info("acp: MCP server started", "session", s.id, "server", srv.Name, "tools", len(conn.tools))
	}
	s.mu.Lock()
	s.mcp = bridge
	s.mu.Unlock()
	return nil
}

func (a *Agent) spawnMCP(ctx context.Context, client *mcp.Client, cwd string, srv mcpServer) (*mcpConn, error) {
	ctx, cancel := context.WithTimeout(ctx, a.opts.Config.MCP.ServerSpawnTimeout)
	defer cancel()
	cmd := exec.Command(srv.Command, srv.Args...)
	cmd.Dir = cwd
	cmd.Stderr = a.opts.MCPStderr
	cmd.Env = mcpEnviron(os.Environ(), srv.Env)
	cs, err := client.Connect(ctx, &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("not ready within %s (acp.mcp.server_spawn_timeout)", a.opts.Config.MCP.ServerSpawnTimeout)
		}
		return nil, err
	}
	list, err := cs.ListTools(ctx, nil)
	if err != nil {
		cs.Close()
		return nil, fmt.Errorf("listing tools: %w", err)
	}
	return &mcpConn{server: srv.Name, cs: cs, tools: list.Tools}, nil
}

func (b *mcpBridge) close() {
	for _, c := range b.conns {
		c.cs.Close()
	}
}

func mcpToolName(server, tool string) string {
	n := "mcp__" + toolNameUnsafe.ReplaceAllString(server, "_") + "__" + toolNameUnsafe.ReplaceAllString(tool, "_")
	if len(n) > 64 {
		n = n[:64]
	}
	return n
}

func (b *mcpBridge) tools() []*tool {
	var out []*tool
	for _, c := range b.conns {
		for _, t := range c.tools {
			c, t := c, t
			schema, err := json.Marshal(t.InputSchema)
			if err != nil || t.InputSchema == nil {
				schema = []byte(`{"type":"object"}`)
			}
			out = append(out, &tool{
				name:        mcpToolName(c.server, t.Name),
				description: fmt.Sprintf("%s (MCP server %s)", t.Description, c.server),
				kind:        "other",
				params:      string(schema),
				title:       func(map[string]any) string { return c.server + ": " + t.Name },
				run: func(ctx context.Context, s *session, r *toolRun) (string, error) {
					res, err := c.cs.CallTool(ctx, &mcp.CallToolParams{Name: t.Name, Arguments: r.args})
					if err != nil {
						return "", err
					}
					var text []string
					for _, part := range res.Content {
						if tc, ok := part.(*mcp.TextContent); ok {
							text = append(text, tc.Text)
						}
					}
					joined := strings.Join(text, "\n")
					if res.IsError {
						return "", errors.New(joined)
					}
					return joined, nil
				},
			})
		}
	}
	return out
}

// mcpEnviron is an MCP server's environment: the agent's without its
// credentials (an MCP server is third-party code and gets no router token,
// API key or tailnet auth key), plus what the editor set for the server.
func mcpEnviron(environ []string, extra []envVar) []string {
	var env []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if name == EnvRouterToken || name == EnvAPIKey || name == EnvTSAuthKey {
			continue
		}
		env = append(env, kv)
	}
	for _, e := range extra {
		env = append(env, e.Name+"="+e.Value)
	}
	return env
}
