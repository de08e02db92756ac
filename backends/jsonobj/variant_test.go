package jsonobj_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/anvil-serving/anvil-router/backends/jsonobj"
)

// TestParseRefusesVariantsOfRouterOwnedKeys: a serve decoding with Go's
// encoding/json takes "Model" or "MAX_TOKENS" for the key the router
// rewrote, so such bodies are refused like duplicates.
func TestParseRefusesVariantsOfRouterOwnedKeys(t *testing.T) {
	tests := []struct {
		name, doc string
		want      error
	}{
		{"exact keys", `{"model":"a","stream":true,"max_tokens":1,"max_completion_tokens":1,"max_output_tokens":1}`, nil},
		{"unrelated keys", `{"messages":[],"metadata":{},"seed":1,"stop":["x"],"MESSAGES":[]}`, nil},
		{"Model", `{"Model":"x"}`, jsonobj.ErrKeyVariant},
		{"Model beside model", `{"model":"chat","Model":"x"}`, jsonobj.ErrKeyVariant},
		{"MAX_TOKENS", `{"model":"chat","MAX_TOKENS":99999}`, jsonobj.ErrKeyVariant},
		{"Stream", `{"Stream":true}`, jsonobj.ErrKeyVariant},
		{"Max_Completion_Tokens", `{"Max_Completion_Tokens":5}`, jsonobj.ErrKeyVariant},
		{"max_output_TOKENS", `{"max_output_TOKENS":5}`, jsonobj.ErrKeyVariant},
		{"escaped capital", `{"\u004dodel":"x"}`, jsonobj.ErrKeyVariant},
		{"Kelvin sign", "{\"max_to\u212aens\":5}", jsonobj.ErrKeyVariant},
		{"long s", "{\"\u017ftream\":true}", jsonobj.ErrKeyVariant},
		{"exact duplicate still", `{"model":"a","model":"b"}`, jsonobj.ErrDuplicateKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := jsonobj.Parse([]byte(tc.doc))
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("Parse(%s) = %v, want %v", tc.doc, err, tc.want)
			}
			if tc.want != nil && !errors.Is(err, jsonobj.ErrDuplicateKey) {
				t.Errorf("%v does not wrap ErrDuplicateKey (the front door's 400)", err)
			}
			if tc.want == jsonobj.ErrKeyVariant {
				// The premise: encoding/json does take it for the owned key.
				var v struct {
					Model           *string
					Stream          *bool
					MaxTokens       *int `json:"max_tokens"`
					MaxCompletion   *int `json:"max_completion_tokens"`
					MaxOutputTokens *int `json:"max_output_tokens"`
				}
				if json.Unmarshal([]byte(tc.doc), &v) != nil || (v.Model == nil && v.Stream == nil && v.MaxTokens == nil && v.MaxCompletion == nil && v.MaxOutputTokens == nil) {
					t.Errorf("encoding/json does not match %s to a router-owned key; the case is moot", tc.doc)
				}
			}
		})
	}
}
