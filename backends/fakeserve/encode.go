package fakeserve

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"
)

// plan is everything about the answers that depends only on the Options,
// encoded once per Options change.
type plan struct {
	opts     Options
	authWant []byte // "Bearer <key>", nil when no key is configured

	modelJSON  []byte // the model id as a JSON string
	modelLabel string // the model id escaped for a Prometheus label value
	modelsBody []byte // GET /v1/models

	// chunkHeadTail follows `data: {"id":"chatcmpl-<hex>","object":"chat.completion.chunk","created":<n>`
	// and ends with `"choices":[`; a frame is that head plus a suffix below.
	chunkHeadTail []byte

	roleSuffix      []byte   // role chunk
	deltaSuffix     [][]byte // one content chunk per delta
	finishStop      []byte
	finishLength    []byte
	finishToolCalls []byte
	malformedSuffix []byte // not valid JSON

	// fullContent is the JSON string of all deltas joined (non-stream).
	fullContent []byte
	// completionTail follows `..."created":<n>` in a non-stream answer up to
	// and including `"message":{"role":"assistant","content":`.
	completionTail []byte
}

const (
	chunkObject      = `","object":"chat.completion.chunk","created":`
	completionObject = `","object":"chat.completion","created":`
	choiceEnd        = `,"logprobs":null,"finish_reason":null}]}` + "\n\n"
)

var (
	frameDone = []byte("data: [DONE]\n\n")
	// frameInbandError is SGLang's queue-full answer to a streaming request.
	frameInbandError = []byte(`data: {"error":{"object":"error","message":"The server is overloaded: the request queue is full (fake serve in mode inband-error).","type":"ServiceUnavailableError","code":503}}` + "\n\n")
	// frameMidstreamError is vLLM's in-band error frame.
	frameMidstreamError = []byte(`data: {"error":{"message":"EngineCore encountered an issue while generating (fake serve in mode midstream-error).","type":"InternalServerError","param":null,"code":500}}` + "\n\n")

	// tool call argument fragments; joined they are {"city":"Paris"}.
	toolArgs      = `{"city":"Paris"}`
	toolArgFrames = [][]byte{
		toolArgSuffix(`{"city":`),
		toolArgSuffix(`"Paris"`),
		toolArgSuffix(`}`),
	}

	body503 = errorBody("The server is currently overloaded and cannot take the request (fake serve in mode 503).",
		"ServiceUnavailableError", "", 503)
	body400 = errorBody("This model's maximum context length is "+strconv.Itoa(MaxModelLen)+" tokens. However, you requested 4608 tokens "+
		"(4096 in the messages, 512 in the completion). Please reduce the length of the messages or completion.",
		"BadRequestError", "", 400)
	body500 = errorBody("EngineCore encountered an issue (fake serve in mode 500).",
		"InternalServerError", "", 500)
	// bodyInband503 is SGLang's flat error body.
	bodyInband503 = []byte(`{"object":"error","message":"The server is overloaded: the request queue is full (fake serve in mode inband-error).","type":"ServiceUnavailableError","param":null,"code":503}`)

	bodyUnauthorized     = []byte(`{"error":"Unauthorized"}`)
	bodyNotFound         = []byte(`{"detail":"Not Found"}`)
	bodyMethodNotAllowed = []byte(`{"detail":"Method Not Allowed"}`)
)

func toolArgSuffix(frag string) []byte {
	var b []byte
	b = append(b, `{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":`...)
	b = append(b, jsonString(frag)...)
	b = append(b, `}}]}`...)
	b = append(b, choiceEnd...)
	return b
}

func newPlan(o Options) *plan {
	p := &plan{opts: o}
	if o.APIKey != "" {
		p.authWant = []byte("Bearer " + o.APIKey)
	}
	p.modelJSON = jsonString(o.Model)
	p.modelLabel = promLabelEscaper.Replace(o.Model)

	var b []byte
	b = append(b, `{"object":"list","data":[{"id":`...)
	b = append(b, p.modelJSON...)
	b = append(b, `,"object":"model","created":`...)
	b = strconv.AppendInt(b, time.Now().Unix(), 10)
	b = append(b, `,"owned_by":"vllm","root":`...)
	b = append(b, p.modelJSON...)
	b = append(b, `,"parent":null`...)
	switch n := o.ReportedMaxModelLen; {
	case n == 0:
		b = append(b, `,"max_model_len":`...)
		b = strconv.AppendInt(b, MaxModelLen, 10)
	case n > 0:
		b = append(b, `,"max_model_len":`...)
		b = strconv.AppendInt(b, int64(n), 10)
	}
	b = append(b, `,"permission":[]}]}`...)
	p.modelsBody = b

	p.chunkHeadTail = concat(`,"model":`, string(p.modelJSON), `,"choices":[`)
	p.roleSuffix = concat(`{"index":0,"delta":{"role":"assistant","content":""}`, choiceEnd)
	p.deltaSuffix = make([][]byte, len(o.Deltas))
	for i, d := range o.Deltas {
		p.deltaSuffix[i] = concat(`{"index":0,"delta":{"content":`, string(jsonString(d)), `}`, choiceEnd)
	}
	p.finishStop = finishSuffix("stop")
	p.finishLength = finishSuffix("length")
	p.finishToolCalls = finishSuffix("tool_calls")
	p.malformedSuffix = []byte(`{"index":0,"delta":{"content":"<malformed chunk` + "\n\n")

	p.fullContent = jsonString(strings.Join(o.Deltas, ""))
	p.completionTail = concat(`,"model":`, string(p.modelJSON),
		`,"choices":[{"index":0,"message":{"role":"assistant","content":`)
	return p
}

func finishSuffix(reason string) []byte {
	return concat(`{"index":0,"delta":{},"logprobs":null,"finish_reason":"`, reason, `","stop_reason":null}]}`, "\n\n")
}

func concat(parts ...string) []byte {
	return []byte(strings.Join(parts, ""))
}

// jsonString encodes s as a JSON string without HTML escaping (like Python's
// json module and pydantic).
func jsonString(s string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// errorBody is vLLM's nested error body. An empty param encodes as null.
func errorBody(msg, typ, param string, code int) []byte {
	var b []byte
	b = append(b, `{"error":{"message":`...)
	b = append(b, jsonString(msg)...)
	b = append(b, `,"type":`...)
	b = append(b, jsonString(typ)...)
	b = append(b, `,"param":`...)
	if param == "" {
		b = append(b, "null"...)
	} else {
		b = append(b, jsonString(param)...)
	}
	b = append(b, `,"code":`...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, "}}"...)
	return b
}

var promLabelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

// appendRandomHex appends 32 random lowercase hex digits (a uuid4().hex look).
func appendRandomHex(b []byte) []byte {
	var raw [16]byte
	binary.LittleEndian.PutUint64(raw[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(raw[8:], rand.Uint64())
	return hex.AppendEncode(b, raw[:])
}

// appendChunkHead appends the request-specific start of every chunk frame:
// `data: {"id":"chatcmpl-…","object":"chat.completion.chunk","created":…,"model":…,"choices":[`.
func (p *plan) appendChunkHead(b []byte, id []byte, created int64) []byte {
	b = append(b, `data: {"id":"`...)
	b = append(b, id...)
	b = append(b, chunkObject...)
	b = strconv.AppendInt(b, created, 10)
	return append(b, p.chunkHeadTail...)
}

// appendUsage appends a vLLM usage object.
func appendUsage(b []byte, prompt, completion int) []byte {
	b = append(b, `"usage":{"prompt_tokens":`...)
	b = strconv.AppendInt(b, int64(prompt), 10)
	b = append(b, `,"completion_tokens":`...)
	b = strconv.AppendInt(b, int64(completion), 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, int64(prompt+completion), 10)
	return append(b, `,"prompt_tokens_details":null}`...)
}

// buffers is a per-request scratch space, pooled.
type buffers struct {
	id   []byte // "chatcmpl-<hex>"
	head []byte // chunk head
	out  []byte // pending output
}

var bufPool = sync.Pool{New: func() any {
	return &buffers{
		id:   make([]byte, 0, 64),
		head: make([]byte, 0, 256),
		out:  make([]byte, 0, 4096),
	}
}}

func getBuffers() *buffers { return bufPool.Get().(*buffers) }

func putBuffers(b *buffers) {
	if cap(b.out) > 1<<20 { // don't keep huge buffers around
		return
	}
	b.id, b.head, b.out = b.id[:0], b.head[:0], b.out[:0]
	bufPool.Put(b)
}
