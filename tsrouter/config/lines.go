package config

import (
	"regexp"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// segment is one step of a key path: a table key, or an array index when
// isIndex is set.
type segment struct {
	name    string
	index   int
	isIndex bool
}

// keyPath locates a value in the document, e.g. router.tiers[1].base_url.
// The same rendering is used for problem keys and for the line index, so a
// validator can report at any path it builds.
type keyPath []segment

// key returns a new path one table key deeper. It never aliases p's backing
// array, so sibling paths built from one parent stay independent.
func (p keyPath) key(name string) keyPath {
	out := make(keyPath, len(p), len(p)+1)
	copy(out, p)
	return append(out, segment{name: name})
}

// at returns a new path one array element deeper.
func (p keyPath) at(i int) keyPath {
	out := make(keyPath, len(p), len(p)+1)
	copy(out, p)
	return append(out, segment{index: i, isIndex: true})
}

var bareKey = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// quoteKey renders a key the way TOML would need it written: bare when
// possible, quoted otherwise (so "llm.primary" stays one visible segment).
func quoteKey(name string) string {
	if bareKey.MatchString(name) {
		return name
	}
	return strconv.Quote(name)
}

func (p keyPath) String() string {
	var b strings.Builder
	for i, s := range p {
		if s.isIndex {
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(s.index))
			b.WriteByte(']')
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(quoteKey(s.name))
	}
	return b.String()
}

// position is where a key path first appears: its line and the order in
// which the document walk met it (used to recover table insertion order,
// which decoding into a Go map loses).
type position struct {
	line    int
	ordinal int
}

// lineIndex maps rendered key paths to their first position in the file.
type lineIndex struct {
	seen map[string]position
	// arrays counts the elements of each array of tables ([[x]]) so far,
	// keyed by resolved path; later headers refer to the last element.
	arrays map[string]int
	next   int
}

// indexLines walks a syntactically valid document once with the low-level
// parser and records where every table header, array-table element, key
// and inline-table key is. It is best effort: anything it cannot place is
// simply absent and lookups fall back to the nearest enclosing table.
func indexLines(data []byte) *lineIndex {
	idx := &lineIndex{seen: map[string]position{}, arrays: map[string]int{}}
	var p unstable.Parser
	p.Reset(data)
	var table keyPath
	for p.NextExpression() {
		expr := p.Expression()
		switch expr.Kind {
		case unstable.Table, unstable.ArrayTable:
			table = idx.header(&p, expr)
		case unstable.KeyValue:
			idx.keyValue(&p, table, expr)
		}
	}
	return idx
}

func (idx *lineIndex) record(path keyPath, line int) {
	k := path.String()
	if _, ok := idx.seen[k]; ok {
		return
	}
	idx.next++
	idx.seen[k] = position{line: line, ordinal: idx.next}
}

func lineOfNode(p *unstable.Parser, n *unstable.Node) int {
	if n == nil || n.Raw.Length == 0 {
		return 0
	}
	return p.Shape(n.Raw).Start.Line
}

// header resolves a [table] or [[array]] header to its full path,
// substituting the current element index for every array of tables it
// passes through.
func (idx *lineIndex) header(p *unstable.Parser, expr *unstable.Node) keyPath {
	isArray := expr.Kind == unstable.ArrayTable
	var path keyPath
	it := expr.Key()
	for it.Next() {
		part := it.Node()
		line := lineOfNode(p, part)
		path = path.key(string(part.Data))
		idx.record(path, line)
		k := path.String()
		if isArray && it.IsLast() {
			n := idx.arrays[k]
			idx.arrays[k] = n + 1
			path = path.at(n)
			idx.record(path, line)
		} else if n, ok := idx.arrays[k]; ok && n > 0 {
			path = path.at(n - 1)
		}
	}
	return path
}

func (idx *lineIndex) keyValue(p *unstable.Parser, table keyPath, kv *unstable.Node) {
	path := table
	line := 0
	it := kv.Key()
	for it.Next() {
		part := it.Node()
		line = lineOfNode(p, part)
		path = path.key(string(part.Data))
		idx.record(path, line)
	}
	idx.value(p, path, kv.Value(), line)
}

// value descends into inline tables and arrays so that keys written inline
// ({ a = 1 }, [{ id = "x" }]) are placed too.
func (idx *lineIndex) value(p *unstable.Parser, path keyPath, v *unstable.Node, line int) {
	switch v.Kind {
	case unstable.InlineTable:
		it := v.Children()
		for it.Next() {
			if child := it.Node(); child.Kind == unstable.KeyValue {
				idx.keyValue(p, path, child)
			}
		}
	case unstable.Array:
		i := 0
		it := v.Children()
		for it.Next() {
			elem := it.Node()
			if elem.Kind == unstable.Comment {
				continue
			}
			elemLine := lineOfNode(p, elem)
			if elemLine == 0 {
				elemLine = line
			}
			ep := path.at(i)
			idx.record(ep, elemLine)
			idx.value(p, ep, elem, elemLine)
			i++
		}
	}
}

// lineOf returns the line of path, or of its nearest recorded ancestor (a
// missing key is reported at the table that should hold it); 0 if unknown.
func (idx *lineIndex) lineOf(path keyPath) int {
	if idx == nil {
		return 0
	}
	for p := path; len(p) > 0; p = p[:len(p)-1] {
		if pos, ok := idx.seen[p.String()]; ok {
			return pos.line
		}
	}
	return 0
}

// ordinalOf returns the document order of path, or 0 if it was not seen.
func (idx *lineIndex) ordinalOf(path keyPath) int {
	if idx == nil {
		return 0
	}
	return idx.seen[path.String()].ordinal
}
