package policy

import (
	"fmt"
	"strconv"
)

// MaxKeyIDLen is the longest API key id.
const MaxKeyIDLen = 64

// CheckKeyID accepts the ids a key may have: 1–64 characters of ASCII
// letters, digits, '.', '_' and '-', starting with a letter or digit. Ids
// appear in admin URLs (/admin/keys/ID), logs and the decision log, so
// slashes, dot-dot paths, control characters, bidi overrides and
// unbounded lengths are refused wherever a key is created. The error
// quotes the id only as far as is safe (Go-quoted, truncated).
func CheckKeyID(id string) error {
	if id == "" {
		return fmt.Errorf("id is required")
	}
	ok := len(id) <= MaxKeyIDLen && isAlnum(id[0])
	for i := 0; ok && i < len(id); i++ {
		c := id[i]
		ok = isAlnum(c) || c == '.' || c == '_' || c == '-'
	}
	if !ok {
		shown := id
		if len(shown) > 40 {
			shown = shown[:40] + "..."
		}
		return fmt.Errorf("id %s is not valid: use 1-%d letters, digits, '.', '_' or '-', starting with a letter or digit", strconv.QuoteToASCII(shown), MaxKeyIDLen)
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
