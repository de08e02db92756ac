package acp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// maxTurnRequests bounds the model requests of one prompt turn: a model
// that keeps calling tools ends the turn with max_turn_requests.
const maxTurnRequests = 32

// codingAgentPrompt is the built-in system prompt of coding_agent_mode.
const codingAgentPrompt = `You are a coding agent working inside the user's editor, in the project at the working directory given below.
Work in small, verifiable steps. Read files before changing them; prefer precise edits over rewriting files; after a change, run the project's build or tests when a command tool is available.
Use the tools: read_file and search to look around, write_file to change a file (the whole new content), run_command for shell commands, update_plan to show your plan for multi-step work.
Paths are relative to the working directory; nothing outside it can be read or written. Be concise in your answers.`

func (a *Agent) systemPrompt(s *session) string {
	var parts []string
	if a.opts.Config.CodingAgentMode {
		parts = append(parts, codingAgentPrompt)
	}
	if a.opts.Config.SystemPrompt != "" {
		parts = append(parts, a.opts.Config.SystemPrompt)
	}
	parts = append(parts, "Working directory: "+s.cwd)
	return strings.Join(parts, "\n\n")
}

func (a *Agent) prompt(ctx context.Context, params json.RawMessage) (any, error) {
	var p promptRequest
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	if len(p.Prompt) == 0 {
		return nil, rpcErr(codeInvalidParams, "prompt must hold at least one content block")
	}
	s := a.session(p.SessionID)
	if s == nil {
		return nil, rpcErr(codeNotFound, "no open session %q (load it first)", p.SessionID)
	}
	user, err := a.userMessage(p.Prompt)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.mu.Lock()
	if s.cancel != nil {
		s.mu.Unlock()
		return nil, rpcErr(codeInvalidRequest, "a prompt turn is already running in this session")
	}
	s.cancel = cancel
	s.lastUsed = time.Now()
	// A failed turn leaves the session as it was before it.
	saved := s.snapshot()
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.cancel = nil
		s.lastUsed = time.Now()
		s.mu.Unlock()
	}()

	for _, b := range p.Prompt {
		b := b
		u := update{SessionUpdate: "user_message_chunk", Content: &b}
		enc, _ := json.Marshal(u)
		s.mu.Lock()
		s.rec.Replay = append(s.rec.Replay, enc)
		s.mu.Unlock()
	}
	s.mu.Lock()
	s.rec.History = append(s.rec.History, user)
	s.mu.Unlock()

	stop, err := a.loop(ctx, s)
	if err != nil && stop != stopCancelled {
		s.mu.Lock()
		s.rec = saved
		s.mu.Unlock()
		a.log.Warn("acp: turn failed", "session", s.id, "err", err)
		var re *RPCError
		if errors.As(err, &re) {
			return nil, re
		}
		return nil, rpcErr(codeInternalError, "%s", err.Error())
	}
	s.mu.Lock()
	s.rec.Updated = time.Now().UTC()
	rec := s.snapshot()
	s.mu.Unlock()
	if err := a.store.save(rec); err != nil {
		a.log.Error("acp: saving the session", "session", s.id, "err", err)
	}
	return promptResponse{StopReason: stop}, nil
}

// userMessage turns ACP content blocks into one chat message: text, links
// and embedded resources as text the model reads; images and audio (when
// [acp.capabilities] offers them) as image_url and input_audio parts.
func (a *Agent) userMessage(blocks []contentBlock) (chatMessage, error) {
	caps := a.opts.Config.Capabilities
	var parts []contentPart
	var text strings.Builder
	flush := func() {
		if text.Len() > 0 {
			parts = append(parts, contentPart{Type: "text", Text: text.String()})
			text.Reset()
		}
	}
	media := false
	for _, b := range blocks {
		switch b.Type {
		case "text":
			text.WriteString(b.Text)
		case "resource_link":
			fmt.Fprintf(&text, "\n[%s](%s)\n", b.Name, b.URI)
		case "resource":
			if !caps.EmbeddedContext {
				return chatMessage{}, rpcErr(codeInvalidParams, "embedded context is not enabled (acp.capabilities.embedded_context)")
			}
			if b.Resource != nil {
				fmt.Fprintf(&text, "\n<resource uri=%q>\n%s\n</resource>\n", b.Resource.URI, b.Resource.Text)
			}
		case "image":
			if !caps.Image {
				return chatMessage{}, rpcErr(codeInvalidParams, "image prompts are not enabled (acp.capabilities.image)")
			}
			flush()
			p := contentPart{Type: "image_url", ImageURL: &struct {
				URL string `json:"url"`
			}{URL: "data:" + b.MimeType + ";base64," + b.Data}}
			parts, media = append(parts, p), true
		case "audio":
			if !caps.Audio {
				return chatMessage{}, rpcErr(codeInvalidParams, "audio prompts are not enabled (acp.capabilities.audio)")
			}
			flush()
			format := strings.TrimPrefix(strings.TrimPrefix(b.MimeType, "audio/"), "x-")
			p := contentPart{Type: "input_audio", InputAudio: &struct {
				Data   string `json:"data"`
				Format string `json:"format"`
			}{Data: b.Data, Format: format}}
			parts, media = append(parts, p), true
		default:
			return chatMessage{}, rpcErr(codeInvalidParams, "unknown content block type %q", b.Type)
		}
	}
	if !media {
		return chatMessage{Role: "user", Content: text.String()}, nil
	}
	flush()
	return chatMessage{Role: "user", Content: parts}, nil
}

// loop runs model requests and tool calls until the model ends the turn.
func (a *Agent) loop(ctx context.Context, s *session) (string, error) {
	model, err := a.model(ctx)
	if err != nil {
		return "", err
	}
	for range maxTurnRequests {
		s.mu.Lock()
		msgs := append([]chatMessage{{Role: "system", Content: a.systemPrompt(s)}}, s.rec.History...)
		s.mu.Unlock()
		var text, thought strings.Builder
		comp, err := a.opts.Router.chat(ctx, model, msgs, a.tools(s), streamHandler{
			text: func(t string) {
				text.WriteString(t)
				a.emit(s, update{SessionUpdate: "agent_message_chunk", Content: &contentBlock{Type: "text", Text: t}}, false)
			},
			thought: func(t string) {
				thought.WriteString(t)
				a.emit(s, update{SessionUpdate: "agent_thought_chunk", Content: &contentBlock{Type: "text", Text: t}}, false)
			},
		})
		// What was streamed is recorded once, merged, for session/load.
		a.record(s, "agent_thought_chunk", thought.String())
		a.record(s, "agent_message_chunk", text.String())
		if ctx.Err() != nil {
			a.keepPartial(s, text.String())
			return stopCancelled, nil
		}
		if err != nil {
			return "", err
		}
		msg := chatMessage{Role: "assistant", ToolCalls: comp.ToolCalls}
		if comp.Text != "" || len(comp.ToolCalls) == 0 {
			msg.Content = comp.Text
		}
		s.mu.Lock()
		s.rec.History = append(s.rec.History, msg)
		s.mu.Unlock()
		if len(comp.ToolCalls) == 0 {
			switch comp.FinishReason {
			case "length":
				return stopMaxTokens, nil
			case "content_filter":
				return stopRefusal, nil
			}
			return stopEndTurn, nil
		}
		for _, tc := range comp.ToolCalls {
			result := a.runTool(ctx, s, tc)
			s.mu.Lock()
			s.rec.History = append(s.rec.History, chatMessage{Role: "tool", ToolCallID: tc.ID, Content: result})
			s.mu.Unlock()
			if ctx.Err() != nil {
				return stopCancelled, nil
			}
		}
	}
	return stopMaxTurnRequests, nil
}

// keepPartial records what the model said before a cancel, so the next
// turn's context matches what the user saw.
func (a *Agent) keepPartial(s *session, text string) {
	if text == "" {
		return
	}
	s.mu.Lock()
	s.rec.History = append(s.rec.History, chatMessage{Role: "assistant", Content: text})
	s.mu.Unlock()
}

func (a *Agent) record(s *session, kind, text string) {
	if text == "" {
		return
	}
	b, _ := json.Marshal(update{SessionUpdate: kind, Content: &contentBlock{Type: "text", Text: text}})
	s.mu.Lock()
	s.rec.Replay = append(s.rec.Replay, b)
	s.mu.Unlock()
}

// model is default_model, or the first model the router lists for this
// caller.
func (a *Agent) model(ctx context.Context) (string, error) {
	if m := a.opts.Config.DefaultModel; m != "" {
		return m, nil
	}
	ids, err := a.opts.Router.models(ctx)
	if err != nil {
		return "", err
	}
	if len(ids) == 0 {
		return "", errors.New("the router lists no model for this caller; set acp.default_model")
	}
	return ids[0], nil
}
