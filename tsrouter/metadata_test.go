package tsrouter_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
)

const paramsTier = `engine = "vllm"
quantization = "awq"
max_output_tokens = 2048
params = { capacity = { gpu_role = "primary", gpu_name = "RTX 4090", gpu_memory_total_mib = 24564, kv_cache_capacity_tokens = 32768, media_admission_enabled = true, image_limit = 4, video_limit = 0, image_tokens_estimate = 1000, video_tokens_estimate = 5000, bogus = 1 }, capabilities = { modalities = ["text", "image", "text", "Bad Token"], thinking = { supported = true, default = "off", max_tokens = 4096, extra = 1 }, compat = { supportsUsageInStreaming = true, supportedReasoningEfforts = ["low", "high", "low"] } }, fingerprint = { model_revision = "abc123", engine_version = "0.11.0", image_digest = "https://evil.example/x", config_fingerprint = "ok:1" } }`

func getJSON(t *testing.T, url string) (int, http.Header, map[string]any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	json.Unmarshal([]byte(readAll(t, resp)), &out)
	return resp.StatusCode, resp.Header, out
}

func TestMetadataEndpoints(t *testing.T) {
	fake, url := startFake(t, fakeserve.Options{})
	_ = fake
	base := startRouter(t, oneTier(url, paramsTier), routerOpts{})

	s, hdr, caps := getJSON(t, base+"/v1/models/capabilities")
	if s != 200 || hdr.Get("Cache-Control") != "no-store" {
		t.Fatalf("capabilities: %d %v", s, hdr)
	}
	row := caps["data"].([]any)[0].(map[string]any)
	b, _ := json.Marshal(row)
	for _, want := range []string{`"id":"local-a"`, `"aliases":["chat","llm.primary"]`, `"modalities":["image","text"]`, `"context_limit_tokens":8192`,
		`"limits":{"images_per_request":null,"max_output_tokens":2048,"video_per_request":null}`, `"supportedReasoningEfforts":["low","high"]`,
		`"thinking":{"caller_override":null,"default":"off","max_tokens":4096,"supported":true}`, `"readiness":{"loaded":true`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("capabilities row lacks %s:\n%s", want, b)
		}
	}

	_, _, fp := getJSON(t, base+"/v1/models/fingerprints?model=CHAT")
	b, _ = json.Marshal(fp)
	if !strings.Contains(string(b), `"image_digest":null`) || !strings.Contains(string(b), `"model_revision":"abc123"`) {
		t.Errorf("fingerprints: %s", b)
	}

	_, _, capa := getJSON(t, base+"/v1/models/capacity?images=2&input_tokens=1000&output_tokens=500")
	b, _ = json.Marshal(capa)
	for _, want := range []string{`"kv_cache_capacity_tokens":32768`, `"full_context_concurrency":4`, `"status":"ok"`, `"requests_running":`,
		`"image_tokens":2000`, `"visual_token_source":"configured_estimate"`, `"allowed":true`, `"gpu":{"memory_total_mib":24564,"name":"RTX 4090","role":"primary"}`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("capacity lacks %s:\n%s", want, b)
		}
	}

	s, _, ht := getJSON(t, base+"/v1/health/tiers")
	b, _ = json.Marshal(ht)
	if s != 200 || !strings.Contains(string(b), `"status":"up"`) || !strings.Contains(string(b), `"role":"llm"`) {
		t.Errorf("health tiers: %d %s", s, b)
	}

	_, _, st := getJSON(t, base+"/v1/router/status")
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(st["config_sha256"].(string)) || st["object"] != "router_status" {
		t.Errorf("status: %v", st)
	}
	// The hash is stable for a config and changes with it.
	base2 := startRouter(t, oneTier(url, paramsTier), routerOpts{})
	_, _, st2 := getJSON(t, base2+"/v1/router/status")
	base3 := startRouter(t, oneTier(url, strings.Replace(paramsTier, "2048", "1024", 1)), routerOpts{})
	_, _, st3 := getJSON(t, base3+"/v1/router/status")
	if st["config_sha256"] != st2["config_sha256"] || st["config_sha256"] == st3["config_sha256"] {
		t.Errorf("hash not stable or not sensitive: %v %v %v", st["config_sha256"], st2["config_sha256"], st3["config_sha256"])
	}

	for _, tc := range []struct {
		path string
		want int
	}{
		{"/v1/models/capabilities?model=nope", 404},
		{"/v1/models/capabilities?foo=1", 400},
		{"/v1/models/capabilities?model=chat&model=chat", 400},
		{"/v1/models/capacity?images=-1", 400},
		{"/v1/models/capacity?images=1.5", 400},
		{"/v1/router/status?x=1", 400},
	} {
		if s, _, _ := getJSON(t, base+tc.path); s != tc.want {
			t.Errorf("%s: %d, want %d", tc.path, s, tc.want)
		}
	}
}
