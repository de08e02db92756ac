package backends

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"regexp"
	"slices"
	"strings"
)

// The allow-lists below decide what of a tier's free-form params may be
// shown to callers: operators put internal notes in params, so only these
// keys and shapes are published; anything else is dropped, and an invalid
// value becomes null rather than an error.
var (
	tokenPattern       = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)
	gpuRolePattern     = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,63}$`)
	fingerprintPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/+ -]{0,127}$`)
)

func (t *Tier) params(section string) map[string]any {
	m, _ := t.Params[section].(map[string]any)
	return m
}

func positiveInt(v any) any {
	if n, ok := v.(int64); ok && n > 0 {
		return n
	}
	return nil
}

func nonNegativeInt(v any) any {
	if n, ok := v.(int64); ok && n >= 0 {
		return n
	}
	return nil
}

func positiveNumber(v any) any {
	switch n := v.(type) {
	case int64:
		if n > 0 {
			return n
		}
	case float64:
		if n > 0 && !math.IsInf(n, 0) {
			return n
		}
	}
	return nil
}

func boolOrNil(v any) any {
	if b, ok := v.(bool); ok {
		return b
	}
	return nil
}

func matching(re *regexp.Regexp, v any) any {
	if s, ok := v.(string); ok && re.MatchString(s) {
		return s
	}
	return nil
}

// tokens reads a list of tokens, deduplicated; sorted if asked.
func tokens(v any, sorted bool) []string {
	out := []string{}
	list, _ := v.([]any)
	for _, e := range list {
		if s, ok := e.(string); ok && tokenPattern.MatchString(s) && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	if sorted {
		slices.Sort(out)
	}
	return out
}

// Capabilities is the sanitized params.capabilities of the tier.
func (t *Tier) Capabilities() (modalities []string, thinking, compat map[string]any, imagesPerRequest, videoPerRequest any) {
	c := t.params("capabilities")
	modalities = tokens(c["modalities"], true)
	if th, ok := c["thinking"].(map[string]any); ok {
		thinking = map[string]any{
			"supported":       boolOrNil(th["supported"]),
			"default":         matching(tokenPattern, th["default"]),
			"caller_override": boolOrNil(th["caller_override"]),
			"max_tokens":      nil,
		}
		if n, ok := th["max_tokens"].(int64); ok && n >= 1 && n <= 10_000_000 {
			thinking["max_tokens"] = n
		}
	}
	if co, ok := c["compat"].(map[string]any); ok {
		compat = map[string]any{}
		for _, k := range []string{"supportsUsageInStreaming", "supportsStrictMode"} {
			if b, ok := co[k].(bool); ok {
				compat[k] = b
			}
		}
		if _, ok := co["supportedReasoningEfforts"]; ok {
			compat["supportedReasoningEfforts"] = tokens(co["supportedReasoningEfforts"], false)
		}
	}
	return modalities, thinking, compat, nonNegativeInt(c["images_per_request"]), nonNegativeInt(c["video_per_request"])
}

// Fingerprint is the sanitized params.fingerprint: values that could be a
// URL or carry odd characters are nulled.
func (t *Tier) Fingerprint() map[string]any {
	f := t.params("fingerprint")
	out := map[string]any{}
	for _, k := range []string{"model_revision", "engine_version", "image_digest", "config_fingerprint"} {
		v := matching(fingerprintPattern, f[k])
		if s, ok := v.(string); ok && strings.Contains(s, "://") {
			v = nil
		}
		out[k] = v
	}
	return out
}

// CapacityParams is the sanitized params.capacity.
type CapacityParams struct {
	GPURole, GPUName, GPUMemoryTotalMiB      any
	ModelMemoryGiB, KVCacheCapacityTokens    any
	SchedulerMaxNumSeqs                      any
	MediaAdmission                           bool
	ImageLimit, VideoLimit                   any
	ImageTokensEstimate, VideoTokensEstimate any
}

// Capacity returns the tier's sanitized capacity params.
func (t *Tier) Capacity() CapacityParams {
	c := t.params("capacity")
	p := CapacityParams{
		GPURole:               matching(gpuRolePattern, c["gpu_role"]),
		GPUMemoryTotalMiB:     positiveInt(c["gpu_memory_total_mib"]),
		ModelMemoryGiB:        positiveNumber(c["model_memory_gib"]),
		KVCacheCapacityTokens: positiveInt(c["kv_cache_capacity_tokens"]),
		SchedulerMaxNumSeqs:   positiveInt(c["scheduler_max_num_seqs"]),
		MediaAdmission:        c["media_admission_enabled"] == true,
		ImageLimit:            nonNegativeInt(c["image_limit"]),
		VideoLimit:            nonNegativeInt(c["video_limit"]),
		ImageTokensEstimate:   nonNegativeInt(c["image_tokens_estimate"]),
		VideoTokensEstimate:   nonNegativeInt(c["video_tokens_estimate"]),
	}
	if s, ok := c["gpu_name"].(string); ok && len(s) <= 128 {
		p.GPUName = s
	}
	return p
}

// ConfigHash is a stable SHA-256 (hex) of the public routing facts:
// aliases and, per tier, what clients reconcile their limits from. It
// changes whenever any of them does, and never with secrets or hosts.
func (s *Set) ConfigHash() string {
	type tierFacts struct {
		ID              string         `json:"id"`
		Aliases         []string       `json:"aliases"`
		Model           string         `json:"model"`
		Dialect         string         `json:"dialect"`
		ContextLimit    int            `json:"context_limit"`
		MaxOutputTokens int            `json:"max_output_tokens"`
		ToolSupport     bool           `json:"tool_support"`
		Engine          string         `json:"engine"`
		Quantization    string         `json:"quantization"`
		ModelIdentity   bool           `json:"model_identity"`
		Capabilities    map[string]any `json:"capabilities"`
		Fingerprint     map[string]any `json:"fingerprint"`
	}
	routes := [][2]string{}
	for _, r := range s.routes {
		routes = append(routes, [2]string{r.Alias, r.TierID})
	}
	tiers := []tierFacts{}
	for _, t := range s.tiers {
		mod, th, co, img, vid := t.Capabilities()
		aliases := slices.Sorted(slices.Values(t.Aliases))
		tiers = append(tiers, tierFacts{
			ID: t.ID, Aliases: aliases, Model: t.Model, Dialect: t.Dialect,
			ContextLimit: t.ContextLimit, MaxOutputTokens: t.MaxOutputTokens, ToolSupport: t.ToolSupport,
			Engine: t.Engine, Quantization: t.Quantization, ModelIdentity: t.ModelIdentity,
			Capabilities: map[string]any{"modalities": mod, "thinking": th, "compat": co, "images_per_request": img, "video_per_request": vid},
			Fingerprint:  t.Fingerprint(),
		})
	}
	b, _ := json.Marshal(map[string]any{"model_routes": routes, "tiers": tiers})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
