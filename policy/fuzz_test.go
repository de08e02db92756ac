package policy_test

import (
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/policy"
)

func fuzzLookup(name string) (string, bool) {
	switch name {
	case "SET":
		return "value-0123456789abcdef", true
	case "EMPTY":
		return "", true
	}
	return "", false
}

// FuzzExpandEnv: expansion never panics, and an error never carries the
// value of a variable.
func FuzzExpandEnv(f *testing.F) {
	for _, s := range []string{"${SET}", "pre-${SET}-post", "${UNSET}", "${EMPTY}", "$SET", "${", "${}", "${SET", "$${SET}", "${1BAD}", "${A-B}", "plain"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, err := policy.ExpandEnv(s, fuzzLookup)
		if err != nil && strings.Contains(err.Error(), "value-0123456789abcdef") {
			t.Fatalf("error reveals a value: %v", err)
		}
		_ = out
	})
}

// FuzzParseKeysFile: any key file gives keys or an error, never a panic;
// errors never carry a key value; parsed keys have valid ids.
func FuzzParseKeysFile(f *testing.F) {
	f.Add([]byte("[[keys]]\nid = \"a\"\nuser_id = \"u\"\norganization_id = \"o\"\nscopes = [\"read\"]\nkey = \"${SET}\"\n"))
	f.Add([]byte("[[keys]]\nid = \"a\"\nuser_id = \"u\"\norganization_id = \"o\"\nscopes = \"read\"\nkey = \"sk-literal-0123456789abcdef\"\nexpires_at = 2026-12-31T00:00:00Z\nrate_limit = 5\nallowed_backends = [\"t\"]\n"))
	f.Add([]byte("keys = 5\n"))
	f.Add([]byte("[[keys]]\nid = \"../x\"\nkey = \"${UNSET}\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := policy.ParseKeysFile(data, fuzzLookup)
		if err != nil {
			if strings.Contains(err.Error(), "value-0123456789abcdef") {
				t.Fatalf("error reveals a key: %v", err)
			}
			return
		}
		for _, k := range keys {
			if policy.CheckKeyID(k.ID) != nil {
				// Ids are NewKeySet's to refuse; it must.
				if _, _, err := policy.NewKeySet([]policy.APIKey{k}, nil); err == nil {
					t.Fatalf("key set accepted id %q", k.ID)
				}
			}
		}
	})
}

// FuzzCredential: the credential read from the auth headers is trimmed and
// non-empty when found, and comes from Authorization only when its scheme
// is Bearer.
func FuzzCredential(f *testing.F) {
	for _, s := range [][2]string{{"Bearer sk-abc", ""}, {"bearer  x ", ""}, {"", " key "}, {"Basic dXNlcg==", "k"}, {"Bearer", "k"}, {"Bearer \t", ""}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, authz, xkey string) {
		cred, ok := policy.Credential(authz, xkey)
		if ok != (cred != "") || cred != strings.TrimSpace(cred) {
			t.Fatalf("Credential(%q, %q) = %q, %v", authz, xkey, cred, ok)
		}
		if ok && authz != "" && !strings.Contains(authz, cred) {
			t.Fatalf("credential %q not from Authorization %q", cred, authz)
		}
	})
}
