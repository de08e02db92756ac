package guard

// The pii provider's built-in scanners: one hand-written pass over the
// text, dispatching on a byte class table, with no regular expressions and
// no allocation unless something matches.
//
// Every scanner also answers the streaming gate's question: from which
// byte on could the end of this text still become (or grow) a match if
// more text followed? That is the hold: the gate releases everything
// before it. Each entity has a length bound, so the hold is bounded too
// (PEM blocks and over-long keys excepted: those are bounded by max_hold).
//
// Decisions the tests pin down:
//   - An email inside a URL (https://x.example/?to=alice@example.com,
//     https://alice@host.example) is still an email and is masked: the
//     address leaks just the same.
//   - A phone number needs a shape: a leading + (international, 8-15
//     digits) or the North American 3-3-4 groups with separators
//     ("555-123-4567", "(555) 123-4567", "555.123.4567"). A bare run of
//     ten digits is an id, not a phone.
//   - A card is 13-19 digits (single spaces or dashes between groups)
//     that pass the Luhn check and start with 2-6.
//   - An SSN is ddd-dd-dddd (dashes or spaces), with the area, group and
//     serial the SSA never issues (000, 666, 9xx; 00; 0000) excluded.

const (
	clsNone  = 0
	clsAt    = 1
	clsDigit = 2
	clsPlus  = 3 // + or ( : may start a phone
	clsA     = 4 // A: AWS key id
	clsDash  = 5 // -: PEM header
	clsS     = 6 // s: sk- key
	clsB     = 7 // B, b: Bearer token
)

var byteClass = func() (t [256]uint8) {
	t['@'] = clsAt
	for c := '0'; c <= '9'; c++ {
		t[c] = clsDigit
	}
	t['+'], t['('] = clsPlus, clsPlus
	t['A'] = clsA
	t['-'] = clsDash
	t['s'] = clsS
	t['B'], t['b'] = clsB, clsB
	return
}()

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isLocalChar(c byte) bool {
	return isAlnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-'
}

func isDomainChar(c byte) bool { return isAlnum(c) || c == '.' || c == '-' }

func isKeyChar(c byte) bool { return isAlnum(c) || c == '_' || c == '-' }

func isTokenChar(c byte) bool {
	return isAlnum(c) || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' || c == '=' || c == '-'
}

// Entity types of the built-in scanners.
const (
	EntityEmail      = "email"
	EntityPhone      = "phone"
	EntitySSN        = "ssn"
	EntityCreditCard = "credit_card"
	EntityAWSKey     = "aws_access_key"
	EntityPrivateKey = "private_key"
	EntityAPIKey     = "api_key"
)

// BuiltinEntities are the built-in scanners' entity types.
var BuiltinEntities = []string{EntityEmail, EntityPhone, EntitySSN, EntityCreditCard, EntityAWSKey, EntityPrivateKey, EntityAPIKey}

const (
	maxLocal     = 64
	maxDomain    = 255
	digitWindow  = 40 // digits and separators of the longest card or phone
	minAPIKey    = 20
	minBearer    = 16
	maxKeyLength = 512
)

// scanPII appends the entities found in s to out and returns them with
// the hold: len(s) when eof, else the first byte from which more text
// could still make or extend a match. Matches start at from or later;
// s[:from] is look-behind (the streaming gate's released text), read only
// to judge the boundaries of what follows.
func scanPII(s string, from int, eof bool, out []Span) ([]Span, int) {
	hold := len(s)
	n := len(s)
	for i := from; i < n; i++ {
		// Most bytes start nothing: skip them in a tight loop.
		for i < n && byteClass[s[i]] == clsNone {
			i++
		}
		if i == n {
			break
		}
		switch byteClass[s[i]] {
		case clsAt:
			var h int
			out, h = scanEmail(s, i, eof, out)
			hold = min(hold, h)
		case clsDigit, clsPlus:
			if i > 0 && (isAlnum(s[i-1]) || s[i-1] == '+' || s[i-1] == '(') {
				continue // inside a word or a run already looked at
			}
			end, h, sp, ok := scanDigits(s, i, eof)
			hold = min(hold, h)
			if ok {
				out = append(out, sp)
			}
			i = max(end, i+1) - 1
		case clsA:
			if i > 0 && isAlnum(s[i-1]) || i+1 < n && s[i+1] != 'K' && s[i+1] != 'S' && s[i+1] != 'B' && s[i+1] != 'C' && s[i+1] != 'G' && s[i+1] != 'I' && s[i+1] != 'N' && s[i+1] != 'R' && s[i+1] != 'P' {
				continue
			}
			if end, pending := scanAWS(s, i); end > 0 {
				if end == n && !eof {
					hold = min(hold, i)
				} else {
					out = append(out, Span{Start: i, End: end, Type: EntityAWSKey, Score: 1})
					i = end - 1
				}
			} else if pending && !eof {
				hold = min(hold, i)
			}
		case clsDash:
			if i+1 < n && s[i+1] != '-' {
				continue
			}
			end, pending := scanPEM(s, i, eof)
			if pending {
				hold = min(hold, i)
				i = n
			} else if end > 0 {
				out = append(out, Span{Start: i, End: end, Type: EntityPrivateKey, Score: 1})
				i = end - 1
			}
		case clsS:
			if i > 0 && isAlnum(s[i-1]) || i+1 < n && s[i+1] != 'k' {
				continue
			}
			end, pending := scanPrefixed(s, i, "sk-", minAPIKey, isKeyChar, false, eof)
			switch {
			case pending && !eof:
				hold = min(hold, i)
			case end > 0:
				out = append(out, Span{Start: i, End: end, Type: EntityAPIKey, Score: 1})
				i = end - 1
			}
		case clsB:
			if i > 0 && isAlnum(s[i-1]) || i+1 < n && s[i+1]|0x20 != 'e' {
				continue
			}
			end, pending := scanPrefixed(s, i, "bearer ", minBearer, isTokenChar, true, eof)
			switch {
			case pending && !eof:
				hold = min(hold, i)
			case end > 0:
				// The token, not the word: "Bearer <REDACTED:API_KEY>".
				out = append(out, Span{Start: i + len("bearer "), End: end, Type: EntityAPIKey, Score: 1})
				i = end - 1
			}
		}
	}
	if !eof {
		// A trailing run of local-part characters may be an address
		// whose @ has not arrived yet.
		j := n
		for j > 0 && n-j <= maxLocal && isLocalChar(s[j-1]) {
			j--
		}
		if j < n && j >= from && n-j <= maxLocal && (j == 0 || !isLocalChar(s[j-1])) {
			hold = min(hold, j)
		}
	}
	return out, hold
}

// scanEmail looks at the @ at s[at].
func scanEmail(s string, at int, eof bool, out []Span) ([]Span, int) {
	n := len(s)
	start := at
	for start > 0 && isLocalChar(s[start-1]) {
		start--
	}
	if at-start == 0 || at-start > maxLocal {
		return out, n
	}
	for start < at && (s[start] == '.' || s[start] == '-' || s[start] == '+') {
		start++ // punctuation before an address is not part of it
	}
	end := at + 1
	for end < n && isDomainChar(s[end]) {
		end++
	}
	if end == n && !eof {
		if end-at-1 <= maxDomain {
			return out, start
		}
		return out, n
	}
	// Trailing dots and dashes end the sentence, not the domain.
	for end > at+1 && (s[end-1] == '.' || s[end-1] == '-') {
		end--
	}
	if start == at || end-at-1 > maxDomain {
		return out, n
	}
	// The domain needs a dot and a top-level label of two letters or more.
	dot := -1
	for k := end - 1; k > at; k-- {
		if s[k] == '.' {
			dot = k
			break
		}
	}
	if dot < 0 || dot == at+1 || end-dot-1 < 2 {
		return out, n
	}
	for k := dot + 1; k < end; k++ {
		if c := s[k]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return out, n
		}
	}
	return append(out, Span{Start: start, End: end, Type: EntityEmail, Score: 1}), n
}

// scanDigits tries the numbers that start at s[i]: the longest run of
// digit groups (single or double separators between them) within
// digitWindow bytes that is a card, an SSN or a phone. end is the end of
// the match, or of the first digit group when there is none (the caller
// tries again at the next group); hold is i when more text could still
// change the answer (else len(s)).
func scanDigits(s string, i int, eof bool) (end, hold int, sp Span, ok bool) {
	n := len(s)
	hold = n
	if c := s[i]; (c == '+' || c == '(') && (i+1 == n || s[i+1] < '0' || s[i+1] > '9') {
		if i+1 == n && !eof {
			hold = i
		}
		return i + 1, hold, sp, false
	}
	var digits [19]byte
	nd, seps, firstGroup := 0, 0, 0
	best, bestType := 0, ""
	limit := min(n, i+digitWindow)
	j := i
	for j < limit {
		c := s[j]
		if c >= '0' && c <= '9' {
			if nd == len(digits) {
				break
			}
			digits[nd] = c
			nd++
			seps = 0
			j++
			if j < n && s[j] >= '0' && s[j] <= '9' {
				continue
			}
			// A group ends at j.
			if firstGroup == 0 {
				firstGroup = j
			}
			if j == n && !eof {
				break
			}
			if j < n && isAlnum(s[j]) {
				break
			}
			if typ := classifyDigits(s[i:j], digits[:nd]); typ != "" {
				best, bestType = j, typ
			}
			continue
		}
		if c == ' ' || c == '-' || c == '.' || c == '(' || c == ')' || c == '+' && j == i {
			if seps++; seps > 2 {
				break
			}
			j++
			continue
		}
		break
	}
	if j == n && !eof && j < i+digitWindow {
		return firstGroup, i, sp, false
	}
	if best == 0 {
		if firstGroup == 0 {
			firstGroup = j
		}
		return max(firstGroup, i+1), hold, sp, false
	}
	if bestType != EntityPhone && (s[i] == '(' || s[i] == '+') {
		return max(firstGroup, i+1), hold, sp, false
	}
	return best, hold, Span{Start: i, End: best, Type: bestType, Score: 1}, true
}

// classifyDigits names a run's entity from its shape and its digits.
func classifyDigits(run string, d []byte) string {
	nd := len(d)
	switch {
	case nd == 9 && isSSN(run, d):
		return EntitySSN
	case nd >= 13 && nd <= 19 && d[0] >= '2' && d[0] <= '6' && cardSeparators(run) && luhn(d):
		return EntityCreditCard
	case isPhone(run, nd):
		return EntityPhone
	}
	return ""
}

// isSSN is ddd-dd-dddd (or with spaces), with the never-issued numbers
// excluded.
func isSSN(run string, d []byte) bool {
	if len(run) != 11 || run[3] != run[6] || (run[3] != '-' && run[3] != ' ') {
		return false
	}
	area, group, serial := string(d[0:3]), string(d[3:5]), string(d[5:9])
	return area != "000" && area != "666" && d[0] != '9' && group != "00" && serial != "0000"
}

// cardSeparators accepts digits with single spaces or single dashes (one
// kind) between groups.
func cardSeparators(run string) bool {
	var sep byte
	for k := 0; k < len(run); k++ {
		c := run[k]
		if c >= '0' && c <= '9' {
			continue
		}
		if c != ' ' && c != '-' || sep != 0 && c != sep || k > 0 && (run[k-1] < '0' || run[k-1] > '9') {
			return false
		}
		sep = c
	}
	return true
}

func luhn(d []byte) bool {
	sum, double := 0, false
	for k := len(d) - 1; k >= 0; k-- {
		v := int(d[k] - '0')
		if double {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
		double = !double
	}
	return sum%10 == 0
}

// isPhone: +CC… with 8-15 digits, or North American 3-3-4 with separators
// (optionally +1 / 1 first).
func isPhone(run string, nd int) bool {
	if run[0] == '+' {
		return nd >= 8 && nd <= 15
	}
	// Group lengths of the digits, split at separators.
	var groups [6]int
	g, in := 0, false
	for k := 0; k < len(run); k++ {
		c := run[k]
		if c >= '0' && c <= '9' {
			if !in {
				if g == len(groups) {
					return false
				}
				g++
				in = true
			}
			groups[g-1]++
		} else {
			in = false
		}
	}
	gs := groups[:g]
	if len(gs) == 4 && gs[0] == 1 {
		gs = gs[1:]
	}
	return len(gs) == 3 && gs[0] == 3 && gs[1] == 3 && gs[2] == 4
}

var awsPrefixes = [...]string{"AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AIPA", "ANPA", "ANVA", "AROA", "APKA"}

// scanAWS matches an access key id at s[i]: a known four-letter prefix and
// sixteen upper-case letters or digits, not inside a longer word. end is 0
// for no match; pending is true when s ends inside a possible one.
func scanAWS(s string, i int) (end int, pending bool) {
	n := len(s)
	rest := s[i:]
	if len(rest) < 4 {
		for _, p := range awsPrefixes {
			if p[:len(rest)] == rest {
				return 0, true
			}
		}
		return 0, false
	}
	known := false
	for _, p := range awsPrefixes {
		if rest[:4] == p {
			known = true
			break
		}
	}
	if !known {
		return 0, false
	}
	for k := i + 4; k < i+20; k++ {
		if k == n {
			return 0, true
		}
		if c := s[k]; !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return 0, false
		}
	}
	if i+20 < n && isAlnum(s[i+20]) {
		return 0, false
	}
	return i + 20, false
}

const (
	pemBegin = "-----BEGIN "
	pemEnd   = "-----END "
	pemTail  = "PRIVATE KEY-----"
)

// scanPEM matches a PEM private key block at s[i]: from its BEGIN line to
// the end of its END line, or to the end of the text when it has none.
func scanPEM(s string, i int, eof bool) (end int, pending bool) {
	n := len(s)
	rest := s[i:]
	if len(rest) < len(pemBegin) {
		return 0, !eof && pemBegin[:len(rest)] == rest
	}
	if rest[:len(pemBegin)] != pemBegin {
		return 0, false
	}
	// The label: "RSA PRIVATE KEY-----", "PRIVATE KEY-----", "EC …".
	k := i + len(pemBegin)
	for k < n && k-i < 64 && s[k] != '\n' && s[k] != '-' {
		k++
	}
	if k == n {
		return 0, !eof
	}
	lineEnd := k
	for lineEnd < n && lineEnd-k < len("-----") && s[lineEnd] == '-' {
		lineEnd++
	}
	if lineEnd-k < 5 {
		if lineEnd == n {
			return 0, !eof
		}
		return 0, false
	}
	if lineEnd-i < len(pemBegin)+len(pemTail) || s[lineEnd-len(pemTail):lineEnd] != pemTail {
		return 0, false
	}
	// Find the END line.
	for j := lineEnd; j < n; j++ {
		if s[j] != '-' || n-j < len(pemEnd) || s[j:j+len(pemEnd)] != pemEnd {
			continue
		}
		for e := j + len(pemEnd); e <= n-len(pemTail) && e-j < 80; e++ {
			if s[e:e+len(pemTail)] == pemTail {
				return e + len(pemTail), false
			}
		}
		if !eof {
			return 0, true
		}
	}
	if !eof {
		return 0, true
	}
	return n, false
}

// scanPrefixed matches prefix (case-insensitively when fold) at s[i]
// followed by at least minLen token characters. pending is true when s
// ends inside a possible match or a match that could still grow.
func scanPrefixed(s string, i int, prefix string, minLen int, tok func(byte) bool, fold, eof bool) (end int, pending bool) {
	n := len(s)
	k := 0
	for ; k < len(prefix); k++ {
		if i+k == n {
			return 0, !eof
		}
		c := s[i+k]
		if fold && c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != prefix[k] {
			return 0, false
		}
	}
	j := i + k
	for j < n && tok(s[j]) && j-i-k < maxKeyLength {
		j++
	}
	if j == n && !eof {
		return 0, true
	}
	if j-i-k < minLen {
		return 0, false
	}
	return j, false
}
