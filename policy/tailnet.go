package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// TaggedDevices is the user login real control servers (Tailscale,
// headscale) report for tagged nodes: such a node's identity is its tags.
const TaggedDevices = "tagged-devices"

// Identity is a tailnet caller as WhoIs describes it.
type Identity struct {
	// Node is the caller's node name (the MagicDNS label, e.g. "mini").
	Node string
	// Tags are the node's ACL tags; non-empty means a tagged node.
	Tags []string
	// User is the owning user's login ("alice@example.com"), or
	// TaggedDevices for tagged nodes on real control servers.
	User string
	// IP is the node's tailnet address the request came from.
	IP netip.Addr
	// Grants are the raw JSON values of the router's app capability, one
	// per grant that matched this caller (nil: no grant).
	Grants []json.RawMessage
}

// Tagged reports whether the node is identified by tags rather than a user.
func (id *Identity) Tagged() bool { return len(id.Tags) > 0 }

// Grant is one app-capability value:
//
//	{"models": ["llm.*", "chat"], "admin": false, "rpm": 60}
//
// models are alias patterns ("*" matches any run of characters); a grant
// without models grants no model. admin allows the router's management
// API. rpm is a requests-per-minute limit (0 or absent: none).
type Grant struct {
	Models []string `json:"models"`
	Admin  bool     `json:"admin"`
	RPM    int      `json:"rpm"`
	// MaxConcurrency caps the caller's requests in flight at once (0 or
	// absent: the router's default share).
	MaxConcurrency int `json:"max_concurrency"`
	// Guardrails names guardrail providers added for this caller (on top
	// of those that apply to everyone; a grant never removes one).
	Guardrails []string `json:"guardrails"`
	// TokensPerDay and RequestsPerDay are the caller's day budget (UTC
	// days; 0 or absent: none). Budget names a bucket shared by every
	// caller whose grant names it; empty: the caller's own.
	TokensPerDay   int64  `json:"tokens_per_day"`
	RequestsPerDay int64  `json:"requests_per_day"`
	Budget         string `json:"budget"`
}

// TailnetRules are the operator's [tailnet] admission settings.
type TailnetRules struct {
	// RequireGrant denies callers without any grant.
	RequireGrant bool
	// AllowTags / AllowUsers, when either is non-empty, admit only tagged
	// nodes with one of AllowTags or untagged nodes whose user is in
	// AllowUsers.
	AllowTags  []string
	AllowUsers []string
}

// Principal is what one caller may do, decided once per request.
type Principal struct {
	// Identity is the tailnet caller; nil on listeners without one (the
	// loopback dev and local listeners, authenticated by token).
	Identity *Identity
	// AllModels is true when no grant restricts the caller's models.
	AllModels bool
	// Models are the union of the grants' alias patterns.
	Models []string
	// Admin is true when any grant says so.
	Admin bool
	// RPM is the most generous grant limit; 0 means unlimited.
	RPM int
	// MaxConcurrency is the most generous grant's cap on requests in
	// flight; 0 means the router's default share.
	MaxConcurrency int
	// TokensPerDay, RequestsPerDay and Budget are the grants' day budget:
	// the most generous grant's limits (0: none), the first budget name.
	TokensPerDay, RequestsPerDay int64
	Budget                       string
	// Key is the API key the request authenticated with, nil if none. Set
	// it with ApplyKey: a restricted key then also bounds MayUseModel.
	Key *APIKey
	// tierOf maps an alias to its tier id for Key's allowed_backends.
	tierOf func(alias string) string
	// Guardrails are the guardrail providers the caller's grants name
	// ("guardrails": [...]): added to those that apply to everyone.
	Guardrails []string
}

// GuardrailNames are the guardrail providers the caller's grants and key
// add to the operator's (never remove).
func (p *Principal) GuardrailNames() []string {
	if p.Key == nil || len(p.Key.Guardrails) == 0 {
		return p.Guardrails
	}
	if len(p.Guardrails) == 0 {
		return p.Key.Guardrails
	}
	return append(append([]string(nil), p.Guardrails...), p.Key.Guardrails...)
}

// Unrestricted is the principal of a listener that has no identity: it
// may use every model (the token, if configured, has already been checked).
func Unrestricted() *Principal { return &Principal{AllModels: true} }

// Denial is why a caller was refused: Reason is for the operator's log;
// callers are only told they lack permission.
type Denial struct{ Reason string }

func (d *Denial) Error() string { return d.Reason }

// Authorize decides whether id may use the router at all and with which
// rights. Every failure is a *Denial — including unreadable grants: a grant
// the router cannot read must never widen access.
func Authorize(rules TailnetRules, id *Identity) (*Principal, error) {
	if id == nil {
		return nil, &Denial{Reason: "no tailnet identity"}
	}
	if len(rules.AllowTags) > 0 || len(rules.AllowUsers) > 0 {
		if !allowListed(rules, id) {
			if id.Tagged() {
				return nil, &Denial{Reason: "node tags " + strings.Join(id.Tags, ",") + " are not in allow_tags"}
			}
			return nil, &Denial{Reason: "user " + id.User + " is not in allow_users"}
		}
	}
	p := &Principal{Identity: id}
	if len(id.Grants) == 0 {
		if rules.RequireGrant {
			return nil, &Denial{Reason: "no grant of the router capability"}
		}
		// No grants in use: the tailnet ACL that let the peer reach the
		// node is the gate.
		p.AllModels = true
		return p, nil
	}
	for i, raw := range id.Grants {
		g, err := ParseGrant(raw)
		if err != nil {
			return nil, &Denial{Reason: fmt.Sprintf("grant %d: %v", i, err)}
		}
		for _, m := range g.Models {
			if !slices.Contains(p.Models, m) {
				p.Models = append(p.Models, m)
			}
		}
		p.Admin = p.Admin || g.Admin
		if i == 0 || g.RPM == 0 || (p.RPM != 0 && g.RPM > p.RPM) {
			p.RPM = g.RPM
		}
		p.MaxConcurrency = max(p.MaxConcurrency, g.MaxConcurrency)
		for _, name := range g.Guardrails {
			if !slices.Contains(p.Guardrails, name) {
				p.Guardrails = append(p.Guardrails, name)
			}
		}
		if i == 0 || g.TokensPerDay == 0 || (p.TokensPerDay != 0 && g.TokensPerDay > p.TokensPerDay) {
			p.TokensPerDay = g.TokensPerDay
		}
		if i == 0 || g.RequestsPerDay == 0 || (p.RequestsPerDay != 0 && g.RequestsPerDay > p.RequestsPerDay) {
			p.RequestsPerDay = g.RequestsPerDay
		}
		if p.Budget == "" {
			p.Budget = g.Budget
		}
	}
	return p, nil
}

// ParseGrant reads one grant value strictly: unknown fields are errors, so
// a typo ("model" for "models") is refused and logged instead of silently
// granting nothing or everything.
func ParseGrant(raw json.RawMessage) (Grant, error) {
	var g Grant
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&g); err != nil {
		return Grant{}, fmt.Errorf("malformed grant JSON: %w", err)
	}
	if dec.More() {
		return Grant{}, errors.New("malformed grant JSON: trailing data")
	}
	if g.RPM < 0 {
		return Grant{}, errors.New("rpm must be >= 0")
	}
	if g.MaxConcurrency < 0 {
		return Grant{}, errors.New("max_concurrency must be >= 0")
	}
	if g.TokensPerDay < 0 || g.RequestsPerDay < 0 {
		return Grant{}, errors.New("tokens_per_day and requests_per_day must be >= 0")
	}
	if len(g.Budget) > 64 {
		return Grant{}, errors.New("budget name longer than 64 bytes")
	}
	for i, m := range g.Models {
		m = strings.ToLower(strings.TrimSpace(m))
		if m == "" {
			return Grant{}, errors.New("models contains an empty pattern")
		}
		g.Models[i] = m
	}
	return g, nil
}

func allowListed(rules TailnetRules, id *Identity) bool {
	if id.Tagged() {
		for _, tag := range id.Tags {
			if slices.Contains(rules.AllowTags, tag) {
				return true
			}
		}
		return false
	}
	return id.User != "" && id.User != TaggedDevices && slices.Contains(rules.AllowUsers, id.User)
}

// MayUseModel reports whether the principal may use a (normalized) alias:
// its grants cover the alias and, when a restricted API key was applied,
// the key may use the alias's tier.
func (p *Principal) MayUseModel(alias string) bool {
	tier := ""
	if p.tierOf != nil {
		tier = p.tierOf(alias)
	}
	return p.MayUseBackend(alias, tier)
}

// MayUseBackend is MayUseModel for a backend the caller names directly
// rather than through a chat alias — a purpose model or an audio route:
// grants are matched against name, a restricted key against the
// backend's own id (ids are unique across tiers, purpose models and audio
// routes, so a key's allowed_backends can list any of them). An empty id
// never passes a restricted key.
func (p *Principal) MayUseBackend(name, backendID string) bool {
	if k := p.Key; k != nil && !k.MayUseTier(backendID) {
		return false
	}
	return p.grantsCover(name)
}

func (p *Principal) grantsCover(alias string) bool {
	if p.AllModels {
		return true
	}
	for _, pat := range p.Models {
		if matchGlob(pat, alias) {
			return true
		}
	}
	return false
}

// matchGlob matches s against pattern where '*' stands for any run of
// characters (including '.' and '/', which aliases may contain).
func matchGlob(pattern, s string) bool {
	for {
		star := strings.IndexByte(pattern, '*')
		if star < 0 {
			return pattern == s
		}
		if !strings.HasPrefix(s, pattern[:star]) {
			return false
		}
		s = s[star:]
		pattern = pattern[star+1:]
		if pattern == "" {
			return true
		}
		// Try every position for the rest of the pattern.
		for i := 0; i <= len(s); i++ {
			if matchGlob(pattern, s[i:]) {
				return true
			}
		}
		return false
	}
}
