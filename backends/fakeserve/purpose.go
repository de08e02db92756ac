package fakeserve

import (
	"encoding/json"
	"hash/fnv"
	"io"
	"net/http"
)

// servePurpose answers vLLM-style /v1/embeddings and /v1/rerank (the
// Infinity/TEI-compatible shape vLLM serves) with deterministic values,
// so the router's purpose relay can be tested byte for byte. Failure
// modes 400/500/503 apply as for chat.
func (s *Server) servePurpose(w http.ResponseWriter, r *http.Request, kind string) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, http.MethodPost)
		return
	}
	p := s.plan.Load()
	if !p.authorized(r) {
		writeJSON(w, http.StatusUnauthorized, bodyUnauthorized)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	if err != nil {
		return
	}
	s.record(r, body)
	switch s.Mode() {
	case ModeStatus400:
		writeJSON(w, http.StatusBadRequest, []byte(`{"error":{"message":"input too long","type":"BadRequestError","param":null,"code":400}}`))
		return
	case ModeStatus500:
		writeJSON(w, http.StatusInternalServerError, []byte(`{"error":{"message":"internal","type":"InternalServerError","param":null,"code":500}}`))
		return
	case ModeStatus503:
		writeJSON(w, http.StatusServiceUnavailable, []byte(`{"error":{"message":"overloaded","type":"ServiceUnavailableError","param":null,"code":503}}`))
		return
	}
	var req struct {
		Model     string          `json:"model"`
		Input     json.RawMessage `json:"input"`
		Query     string          `json:"query"`
		Documents []string        `json:"documents"`
	}
	if json.Unmarshal(body, &req) != nil {
		writeJSON(w, http.StatusBadRequest, []byte(`{"error":{"message":"invalid JSON","type":"BadRequestError","param":null,"code":400}}`))
		return
	}
	if kind == "embeddings" {
		var inputs []string
		if json.Unmarshal(req.Input, &inputs) != nil {
			var one string
			json.Unmarshal(req.Input, &one)
			inputs = []string{one}
		}
		type item struct {
			Object    string    `json:"object"`
			Index     int       `json:"index"`
			Embedding []float64 `json:"embedding"`
		}
		data := make([]item, len(inputs))
		for i, in := range inputs {
			data[i] = item{Object: "embedding", Index: i, Embedding: vector(in)}
		}
		out, _ := json.Marshal(map[string]any{"object": "list", "model": req.Model, "data": data,
			"usage": map[string]int{"prompt_tokens": len(inputs), "total_tokens": len(inputs)}})
		writeJSON(w, http.StatusOK, out)
		return
	}
	type result struct {
		Index          int     `json:"index"`
		RelevanceScore float64 `json:"relevance_score"`
	}
	results := make([]result, len(req.Documents))
	for i, d := range req.Documents {
		results[i] = result{Index: i, RelevanceScore: vector(req.Query + "\x00" + d)[0]}
	}
	out, _ := json.Marshal(map[string]any{"id": "rerank-fake", "model": req.Model, "results": results,
		"usage": map[string]int{"total_tokens": len(req.Documents)}})
	writeJSON(w, http.StatusOK, out)
}

// vector is a deterministic 4-dimensional embedding of s.
func vector(s string) []float64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	v := h.Sum64()
	out := make([]float64, 4)
	for i := range out {
		out[i] = float64((v>>(16*i))&0xffff) / 65535
	}
	return out
}
