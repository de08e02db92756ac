package main

import (
	"fmt"
	"log/slog"

	"github.com/anvil-serving/anvil-router/policy"
	"github.com/anvil-serving/anvil-router/tsrouter"
	"github.com/anvil-serving/anvil-router/tsrouter/config"
)

// adminAuth resolves [admin.auth] (or the older [admin].auth_env, which is
// method bearer_token) into the handler's admin credential. A secret
// variable that is unset refuses the start, naming the variable. Method
// none is said loudly: it makes every loopback caller an admin.
func adminAuth(a config.Admin, log *slog.Logger) (tsrouter.AdminAuth, error) {
	resolve := func(name string) (policy.Token, error) {
		secret, err := config.ResolveSecret(name)
		if err != nil {
			return policy.Token{}, fmt.Errorf("[admin.auth]: %w", err)
		}
		return policy.NewToken(secret), nil
	}
	var out tsrouter.AdminAuth
	var err error
	switch a.Auth.Method {
	case "":
		if a.AuthEnv != "" {
			out.Method = tsrouter.AdminBearerToken
			if out.Token, err = resolve(a.AuthEnv); err != nil {
				return out, err
			}
		}
	case config.AdminAuthNone:
		out.Method = tsrouter.AdminNone
		log.Warn("ADMIN AUTHENTICATION IS OFF: [admin.auth] method = \"none\" makes every caller on the loopback listeners (dev listener, local API) an admin without a credential; tailnet callers still need an admin grant or an admin-scoped API key")
	case config.AdminAuthBearer, config.AdminAuthAPIKey:
		out.Method = tsrouter.AdminMethod(a.Auth.Method)
		if out.Token, err = resolve(a.Auth.TokenEnv); err != nil {
			return out, err
		}
	case config.AdminAuthBasic:
		out.Method, out.Username = tsrouter.AdminBasic, a.Auth.Username
		if out.Password, err = resolve(a.Auth.PasswordEnv); err != nil {
			return out, err
		}
	}
	return out, out.Check()
}
