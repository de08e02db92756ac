package guard

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Presidio is a client of a Microsoft Presidio analyzer (presidio-analyzer's
// REST API, POST /analyze): the pii provider's optional external scanner
// for what regular expressions cannot find (names, places, IBANs). Its
// spans are merged with the built-in scanners' by the pii provider.
type Presidio struct {
	endpoint       string
	language       string
	entities       []string
	scoreThreshold *float64
	timeout        time.Duration
	client         *http.Client
}

// presidioMaxAnswer bounds an analyzer's answer: a few hundred spans
// take a few tens of kilobytes.
const presidioMaxAnswer = 4 << 20

// NewPresidio reads the pii provider's external analyzer options:
// endpoint (required: the analyzer's full /analyze URL), language
// (default "en"), entities (Presidio entity names; empty: the analyzer's
// default set), score_threshold (0..1; unset: the analyzer's default) and
// timeout (default "2s").
func NewPresidio(opts map[string]any) (*Presidio, error) {
	o := newOptions("presidio", opts)
	p := &Presidio{
		endpoint: o.httpURL("endpoint"),
		language: o.string("language", "en"),
		entities: o.strings("entities"),
		timeout:  o.duration("timeout", 2*time.Second, false),
		client:   newUpstreamClient(),
	}
	if o.has("score_threshold") {
		t := o.float("score_threshold", 0)
		if t < 0 || t > 1 {
			o.fail("score_threshold", "must be in [0, 1]")
		}
		p.scoreThreshold = &t
	}
	if p.language == "" {
		o.fail("language", "must not be empty")
	}
	if err := o.err(); err != nil {
		return nil, err
	}
	return p, nil
}

// UseTransport makes the client reach the analyzer through rt (the
// router's tailnet dialer, for an analyzer on another tailnet node).
func (p *Presidio) UseTransport(rt http.RoundTripper) { p.client.Transport = rt }

type presidioRequest struct {
	Text           string   `json:"text"`
	Language       string   `json:"language"`
	Entities       []string `json:"entities,omitempty"`
	ScoreThreshold *float64 `json:"score_threshold,omitempty"`
}

type presidioResult struct {
	EntityType *string  `json:"entity_type"`
	Start      *int     `json:"start"`
	End        *int     `json:"end"`
	Score      *float64 `json:"score"`
}

// Analyze returns the analyzer's spans in text, as byte offsets, ordered
// by start. An analyzer that is down, slow, failing or answers anything
// but a well-formed list of in-range spans is an error (the pii
// provider's on_error decides); no error holds text.
func (p *Presidio) Analyze(ctx context.Context, text string) ([]Span, error) {
	if text == "" {
		return nil, nil
	}
	body, err := json.Marshal(presidioRequest{Text: text, Language: p.language, Entities: p.entities, ScoreThreshold: p.scoreThreshold})
	if err != nil {
		return nil, upstreamErr("presidio", nil, nil, "encoding request")
	}
	texts := []string{text}
	data, err := postJSON(ctx, p.client, "presidio", p.endpoint, body, nil, p.timeout, presidioMaxAnswer, texts)
	if err != nil {
		return nil, err
	}
	var results []presidioResult
	if err := json.Unmarshal(data, &results); err != nil {
		return nil, upstreamErr("presidio", nil, texts, "answer is not a JSON array of results")
	}
	if len(results) == 0 {
		return nil, nil
	}
	// Presidio is Python: start and end count code points. JSON encoding
	// turned each invalid UTF-8 byte into one U+FFFD, and ranging over
	// a Go string yields one rune per invalid byte too, so the counts
	// agree.
	byteAt := runeOffsets(text)
	runes := len(byteAt) - 1
	spans := make([]Span, 0, len(results))
	for i, r := range results {
		switch {
		case r.EntityType == nil || *r.EntityType == "" || r.Start == nil || r.End == nil || r.Score == nil:
			return nil, upstreamErr("presidio", nil, texts, "result %d lacks entity_type, start, end or score", i)
		case *r.Start < 0 || *r.End > runes || *r.Start >= *r.End:
			return nil, upstreamErr("presidio", nil, texts, "result %d: range [%d, %d) outside the text's %d characters", i, *r.Start, *r.End, runes)
		case *r.Score < 0 || *r.Score > 1:
			return nil, upstreamErr("presidio", nil, texts, "result %d: score outside [0, 1]", i)
		}
		spans = append(spans, Span{
			Start: byteAt[*r.Start],
			End:   byteAt[*r.End],
			Type:  presidioType(*r.EntityType),
			Score: *r.Score,
		})
	}
	slices.SortStableFunc(spans, func(a, b Span) int { return a.Start - b.Start })
	return spans, nil
}

// runeOffsets returns the byte offset of every code point of s, and
// len(s) last.
func runeOffsets(s string) []int {
	at := make([]int, 0, utf8.RuneCountInString(s)+1)
	for i := range s {
		at = append(at, i)
	}
	return append(at, len(s))
}

// presidioType names Presidio's entity types as the built-in scanners do,
// so one entity has one name in actions, records and counters.
func presidioType(entity string) string {
	switch entity {
	case "EMAIL_ADDRESS":
		return "email"
	case "PHONE_NUMBER":
		return "phone"
	case "US_SSN":
		return "ssn"
	case "CREDIT_CARD":
		return "credit_card"
	}
	return strings.ToLower(entity)
}
