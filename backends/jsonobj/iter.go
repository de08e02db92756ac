package jsonobj

// Iter walks the members of an object, or the elements of an array, at any
// depth of a document Valid has accepted, without allocating: the dialect
// translators read every streamed chunk with it. On a document Valid would
// refuse it stops early rather than fail.
type Iter struct {
	b []byte
	i int
}

// MemberIter iterates over the members of the object v; a v that is not an
// object has none.
func MemberIter(v []byte) Iter {
	if len(v) < 2 || v[0] != '{' {
		return Iter{}
	}
	return Iter{b: v, i: 1}
}

// ElementIter iterates over the elements of the array v; a v that is not an
// array has none.
func ElementIter(v []byte) Iter {
	if len(v) < 2 || v[0] != '[' {
		return Iter{}
	}
	return Iter{b: v, i: 1}
}

// Member returns the next member: key is the raw bytes between its quotes
// (escapes are not decoded, so compare it only with keys that need none),
// val the raw value.
func (it *Iter) Member() (key, val []byte, ok bool) {
	i := it.next()
	if i >= len(it.b) || it.b[i] != '"' {
		it.b = nil
		return nil, nil, false
	}
	end, err := skipString(it.b, i)
	if err != nil {
		it.b = nil
		return nil, nil, false
	}
	key = it.b[i+1 : end-1]
	i = skipSpace(it.b, end)
	if i >= len(it.b) || it.b[i] != ':' {
		it.b = nil
		return nil, nil, false
	}
	i = skipSpace(it.b, i+1)
	if end, err = skipValue(it.b, i); err != nil {
		it.b = nil
		return nil, nil, false
	}
	it.i = end
	return key, it.b[i:end], true
}

// Element returns the next raw element.
func (it *Iter) Element() (val []byte, ok bool) {
	i := it.next()
	if i >= len(it.b) || it.b[i] == ']' {
		it.b = nil
		return nil, false
	}
	end, err := skipValue(it.b, i)
	if err != nil {
		it.b = nil
		return nil, false
	}
	it.i = end
	return it.b[i:end], true
}

// next skips the whitespace and the comma before the next entry.
func (it *Iter) next() int {
	i := skipSpace(it.b, it.i)
	if i < len(it.b) && it.b[i] == ',' {
		i = skipSpace(it.b, i+1)
	}
	return i
}

// SkipSpace returns the index of the first byte at or after i that is not
// JSON whitespace.
func SkipSpace(b []byte, i int) int { return skipSpace(b, i) }
