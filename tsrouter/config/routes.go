package config

import (
	"cmp"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// aliasEntry is one model_routes leaf before normalisation.
type aliasEntry struct {
	alias  string  // dotted keys joined back with "."
	at     keyPath // where it is written (dotted or quoted)
	target any
}

// flattenAliases undoes TOML's dotted-key nesting so that llm.primary = "x"
// and "llm.primary" = "x" mean the same alias.
func flattenAliases(prefix []string, at keyPath, m map[string]any, out []aliasEntry) []aliasEntry {
	for k, v := range m {
		parts := append(slices.Clip(prefix), k)
		if sub, ok := v.(map[string]any); ok {
			out = flattenAliases(parts, at.key(k), sub, out)
			continue
		}
		out = append(out, aliasEntry{alias: strings.Join(parts, "."), at: at.key(k), target: v})
	}
	return out
}

// parseRoutes validates [router.model_routes] and returns the aliases in
// file order, which is the order of /v1/models.
func parseRoutes(t table, tierIDs map[string]bool) []Route {
	entries := flattenAliases(nil, t.path, t.m, nil)
	if len(entries) == 0 {
		t.c.report(t.path, "must map at least one alias to a tier")
		return nil
	}
	// A Go map has no order; the document walk remembers it. Entries it
	// could not place (there should be none) go last, by name.
	slices.SortStableFunc(entries, func(a, b aliasEntry) int {
		oa, ob := t.c.lines.ordinalOf(a.at), t.c.lines.ordinalOf(b.at)
		if (oa == 0) != (ob == 0) {
			return cmp.Compare(ob, oa)
		}
		return cmp.Or(cmp.Compare(oa, ob), cmp.Compare(a.alias, b.alias))
	})

	var routes []Route
	first := map[string]aliasEntry{}
	for _, e := range entries {
		display := t.path.String() + "." + quoteKey(e.alias)
		target, ok := e.target.(string)
		if !ok {
			t.c.reportAs(display, e.at, "must be a tier id string, got %s", typeName(e.target))
			continue
		}
		alias := strings.ToLower(strings.TrimSpace(e.alias))
		if alias == "" {
			t.c.reportAs(display, e.at, "alias is empty after trimming")
			continue
		}
		if prev, dup := first[alias]; dup {
			t.c.reportAs(display, e.at, "duplicate alias %q after trim and lowercase (first written as %q on line %d)",
				alias, prev.alias, t.c.lines.lineOf(prev.at))
			continue
		}
		first[alias] = e
		if !tierIDs[target] {
			t.c.reportAs(display, e.at, "routes to %q, which is not a tier id", target)
			continue
		}
		routes = append(routes, Route{Alias: alias, TierID: target})
	}
	return routes
}

// checkAddressable reports tiers that no alias reaches: such a tier would
// be started and probed but could never serve a request, which is almost
// always a typo in model_routes.
func checkAddressable(tiers []Tier, paths []keyPath, routes []Route, c *checker) {
	used := map[string]bool{}
	for _, r := range routes {
		used[r.TierID] = true
	}
	for i, tier := range tiers {
		if tier.ID != "" && !used[tier.ID] {
			c.report(paths[i], "tier %q is unaddressable: no alias in [router.model_routes] routes to it", tier.ID)
		}
	}
}

// required reports an absent key that an entry cannot do without.
func (t table) required(keys ...string) {
	for _, k := range keys {
		if !t.has(k) {
			t.c.report(t.path.key(k), "is required")
		}
	}
}

// nonEmpty reads a string that must have content.
func (t table) nonEmpty(key string) string {
	s, ok := t.str(key)
	if ok && strings.TrimSpace(s) == "" {
		t.c.report(t.path.key(key), "must be a non-empty string")
		return ""
	}
	return s
}

// oneOf reads a string restricted to a few words.
func (t table) oneOf(key string, words ...string) string {
	s, ok := t.str(key)
	if !ok {
		return ""
	}
	if !slices.Contains(words, s) {
		t.c.report(t.path.key(key), "must be one of %s, got %q", strings.Join(words, ", "), s)
		return ""
	}
	return s
}

func parsePurposeModels(list []table, ids map[string]keyPath) []PurposeModel {
	var out []PurposeModel
	seen := map[[2]string]keyPath{}
	for _, t := range list {
		t.required("id", "kind", "model", "base_url")
		var pm PurposeModel
		pm.ID, _ = entryID(t, ids)
		pm.Kind = t.oneOf("kind", "embedding", "rerank")
		pm.Model = t.nonEmpty("model")
		if t.has("base_url") {
			pm.BaseURL, _ = baseURL(t)
		}
		if t.has("auth_env") {
			pm.AuthEnv = t.envName("auth_env")
		}
		pm.Timeout = t.seconds("timeout", 0, false)
		// The (kind, model) pair is the routing key of /v1/embeddings and
		// /v1/rerank, so two entries for it would make routing ambiguous.
		if pm.Kind != "" && pm.Model != "" {
			k := [2]string{pm.Kind, pm.Model}
			if prev, dup := seen[k]; dup {
				t.c.report(t.path.key("model"), "duplicate %s model %q (already served by %s)", pm.Kind, pm.Model, prev)
			} else {
				seen[k] = t.path
			}
		}
		out = append(out, pm)
	}
	return out
}

// audioPrefixes are the networks an audio upstream may live on: private
// LANs, the tailnet CGNAT range, nothing public and no loopback except the
// literal 127.0.0.1.
var audioPrefixes = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("100.64.0.0/10"),
}

// audioURLProblem applies the audio upstream rules. Audio requests carry
// caller media and a bearer token, so the destination is pinned to hosts
// the operator controls; the URL itself is never echoed.
func audioURLProblem(raw string) string {
	if !hasHTTPScheme(raw) {
		return "must start with http:// or https://"
	}
	// Any ? or # is refused, even an empty query, so no part of the URL is
	// silently dropped when paths are appended.
	if strings.ContainsAny(raw, "?#") {
		return "must not contain a query or fragment"
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "is not a valid URL"
	}
	if u.User != nil {
		return "must not contain userinfo (user@host)"
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "port must be between 1 and 65535"
		}
	}
	host := strings.ToLower(u.Hostname())
	if host == "host.docker.internal" || host == "127.0.0.1" {
		return ""
	}
	if addr, err := netip.ParseAddr(host); err == nil && addr.Is4() {
		for _, p := range audioPrefixes {
			if p.Contains(addr) {
				return ""
			}
		}
	}
	return "host must be host.docker.internal, 127.0.0.1, or an IP in 10/8, 172.16/12, 192.168/16 or 100.64/10 (not localhost, other names, other loopbacks or public addresses)"
}

func parseAudioRoutes(router table, list []table, ids map[string]keyPath) []AudioRoute {
	var out []AudioRoute
	var paths []keyPath
	for _, t := range list {
		t.required("id", "purpose", "model", "base_url")
		var ar AudioRoute
		ar.ID, _ = entryID(t, ids)
		ar.Purpose = t.oneOf("purpose", "stt", "tts")
		ar.Model = t.nonEmpty("model")
		if s, ok := t.str("base_url"); ok {
			if msg := audioURLProblem(s); msg != "" {
				t.c.report(t.path.key("base_url"), "%s", msg)
			} else {
				ar.BaseURL = s
			}
		}
		// Only TTS converts raw PCM from the serve, so only TTS needs to
		// know the serve's sample rate.
		switch {
		case ar.Purpose == "tts" && !t.has("source_sample_rate"):
			t.c.report(t.path.key("source_sample_rate"), "is required for tts routes")
		case ar.Purpose == "stt" && t.has("source_sample_rate"):
			t.c.report(t.path.key("source_sample_rate"), "is not allowed on stt routes")
		case t.has("source_sample_rate"):
			ar.SourceSampleRate = t.intIn("source_sample_rate", 8000, 192000, 0)
		}
		ar.Timeout = t.seconds("timeout", 0, false)
		if t.has("auth_env") {
			ar.AuthEnv = t.envName("auth_env")
		}
		ar.Default, _ = t.boolean("default")
		out = append(out, ar)
		paths = append(paths, t.path)
	}
	checkAudioDefaults(router.c, router.path.key("audio_routes"), out, paths)
	return out
}

// checkAudioDefaults makes the default route of each purpose unambiguous:
// a lone route is the default; among several exactly one must say so.
func checkAudioDefaults(c *checker, at keyPath, routes []AudioRoute, paths []keyPath) {
	for _, purpose := range []string{"stt", "tts"} {
		var members []int
		for i, r := range routes {
			if r.Purpose == purpose {
				members = append(members, i)
			}
		}
		switch {
		case len(members) == 1:
			routes[members[0]].Default = true
		case len(members) > 1:
			firstDefault := -1
			for _, i := range members {
				if !routes[i].Default {
					continue
				}
				if firstDefault < 0 {
					firstDefault = i
					continue
				}
				c.report(paths[i].key("default"), "%s route %s already has default = true; exactly one %s route may", purpose, paths[firstDefault], purpose)
			}
			if firstDefault < 0 {
				c.report(at, "%d %s routes but none has default = true; exactly one must", len(members), purpose)
			}
		}
	}
}
