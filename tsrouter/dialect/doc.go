// Package dialect translates between the wire formats callers and serves speak: Anthropic Messages and OpenAI Chat Completions.
package dialect
