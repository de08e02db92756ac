package main

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/anvil-serving/anvil-router/tsrouter/config"
	"github.com/anvil-serving/anvil-router/tsrouter/sandbox"
)

// confineBinds applies the bind sandbox before anything listens: TCP bind
// stays allowed only on the loopback listener ports serve opens itself
// (--dev-listen, or [server].local_listen on the tailnet), so no library
// can publish a socket on a host interface. tailscale's peerAPI listener
// then fails to bind and tailscale serves peerAPI inside netstack.
func confineBinds(mode sandbox.Mode, cfg *config.Config, devListen string, log *slog.Logger) error {
	if mode == sandbox.Off {
		log.Warn("sandbox off (--sandbox=off): the process may bind TCP on any interface; tailscale opens its peerAPI listener on 0.0.0.0")
		return nil
	}
	var ports []uint16
	switch {
	case devListen != "":
		// No tailnet in dev mode, so nothing else binds: an ephemeral
		// port (":0") is safe to allow here.
		p, err := sandbox.PortOf(devListen)
		if err != nil {
			return usageError{err}
		}
		ports = append(ports, p)
	case cfg.Server.LocalListen != "":
		p, err := sandbox.PortOf(cfg.Server.LocalListen)
		if err != nil {
			return usageError{err}
		}
		if p == 0 {
			// Allowing port 0 would also allow tailscale's fallback
			// peerAPI listener, which binds an ephemeral port.
			return usageError{fmt.Errorf("[server].local_listen %q: the sandbox needs a fixed port (or run with --sandbox=off)", cfg.Server.LocalListen)}
		}
		ports = append(ports, p)
	}
	res, err := sandbox.RestrictBind(mode, ports)
	if err != nil {
		if errors.Is(err, sandbox.ErrUnsupported) {
			return fmt.Errorf("--sandbox=require: %w", err)
		}
		return err
	}
	if !res.Enforced {
		log.Warn("sandbox not enforced: this kernel cannot restrict TCP bind (Landlock ABI 4, Linux 6.7, needed); tailscale may open its peerAPI listener on 0.0.0.0. Use --sandbox=require to refuse to start instead", "landlock_abi", res.ABI)
		return nil
	}
	log.Info("sandbox: TCP bind restricted to the loopback listener ports", "ports", fmt.Sprint(res.Ports), "landlock_abi", res.ABI)
	return nil
}
