package config

import "strings"

// WebUI is the [webui] table: the browser interface compiled into the
// binary (package tsrouter/webui). Defaults apply when it is absent.
type WebUI struct {
	// Enabled serves the UI (default true).
	Enabled bool
	// PathPrefix is where it is served (default /webui): starts with /,
	// has no "..", no trailing slash.
	PathPrefix string
}

// Prefix is where the UI is served, "" when it is disabled.
func (w WebUI) Prefix() string {
	if !w.Enabled {
		return ""
	}
	return w.PathPrefix
}

// DefaultWebUIPrefix is [webui].path_prefix when none is set.
const DefaultWebUIPrefix = "/webui"

// DefaultWebUI is the [webui] table when the file has none.
func DefaultWebUI() WebUI { return WebUI{Enabled: true, PathPrefix: DefaultWebUIPrefix} }

var webuiKeys = []string{"enabled", "path_prefix"}

func parseWebUI(t table) WebUI {
	t.unknown(webuiKeys, "[webui]")
	w := DefaultWebUI()
	if b, ok := t.boolean("enabled"); ok {
		w.Enabled = b
	}
	if p, ok := t.str("path_prefix"); ok {
		if msg := checkWebUIPrefix(p); msg != "" {
			t.c.report(t.path.key("path_prefix"), "%s", msg)
		} else {
			w.PathPrefix = strings.TrimRight(p, "/")
		}
	}
	return w
}

// checkWebUIPrefix says what is wrong with a path prefix ("" nothing).
// The prefix becomes a route pattern (the session cookie's Path is "/":
// the pages call the API outside the prefix), so it must be a plain
// absolute path: no "..", no query, no wildcard.
func checkWebUIPrefix(p string) string {
	switch {
	case !strings.HasPrefix(p, "/"):
		return "must start with /"
	case strings.Contains(p, ".."):
		return "must not contain .."
	case strings.Trim(p, "/") == "":
		return "must not be / (the API lives there)"
	case strings.ContainsAny(p, "?#{}% \t\r\n\\") || strings.Contains(p, "//"):
		return "must be a plain path: letters, digits, -, _, . and / only"
	}
	first := "/" + strings.SplitN(strings.Trim(p, "/"), "/", 2)[0]
	for _, api := range []string{"/v1", "/admin", "/anthropic", "/health", "/healthz", "/metrics"} {
		if strings.EqualFold(first, api) {
			return "must not be under " + api + " (the API's paths)"
		}
	}
	for _, r := range p {
		if !(r == '/' || r == '-' || r == '_' || r == '.' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return "must be a plain path: letters, digits, -, _, . and / only"
		}
	}
	return ""
}
