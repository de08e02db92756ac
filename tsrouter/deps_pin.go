//go:build tools

// This file pins the tailnet dependencies at the versions the front door is
// built and tested against (tailscale.com v1.102.5 is the newest release that
// builds with Go 1.26) until the tailnet listener imports them for real. The
// "tools" build tag keeps it out of every build while go mod tidy still
// sees the imports.
package tsrouter

import (
	_ "tailscale.com/client/local"
	_ "tailscale.com/tsnet"
)
