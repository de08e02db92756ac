package tsrouter

import "github.com/anvil-serving/anvil-router/policy"

// RouteClass is the API key class of the route that serves path under
// h's config (PathOther when none does).
func RouteClass(h *Handler, path string) policy.PathClass { return h.routeOf(path).class }

// CSVCell is how the usage CSV writes a group name.
var CSVCell = csvCell
