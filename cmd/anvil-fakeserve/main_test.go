package main

import (
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
)

func TestRunRejectsBadArguments(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		env       map[string]string
		wantUsage bool
		wantErr   string
	}{
		{name: "non-loopback listen", args: []string{"--listen", "0.0.0.0:8001"}, wantErr: "loopback"},
		{name: "LAN listen", args: []string{"--listen", "192.168.0.2:8001"}, wantErr: "loopback"},
		{name: "host name listen", args: []string{"--listen", "example.com:8001"}, wantErr: "loopback"},
		{name: "unknown mode", args: []string{"--mode", "explode"}, wantErr: "unknown mode"},
		{name: "unset api key env", args: []string{"--api-key-env", "FAKE_KEY"}, wantErr: "FAKE_KEY"},
		{name: "empty api key env", args: []string{"--api-key-env", "FAKE_KEY"}, env: map[string]string{"FAKE_KEY": ""}, wantErr: "FAKE_KEY"},
		{name: "unknown flag", args: []string{"--bogus"}, wantUsage: true},
		{name: "bad duration", args: []string{"--ttft", "soon"}, wantUsage: true},
		{name: "stray argument", args: []string{"extra"}, wantUsage: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(k string) string { return tt.env[k] }
			var stderr strings.Builder
			err := run(tt.args, getenv, &stderr, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err == nil {
				t.Fatal("run succeeded, want an error")
			}
			var ue usageError
			if got := errors.As(err, &ue); got != tt.wantUsage {
				t.Errorf("usage error = %v, want %v (err %v)", got, tt.wantUsage, err)
			}
			if tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want it to mention %q", err, tt.wantErr)
			}
		})
	}
}
