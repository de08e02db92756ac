module github.com/anvil-serving/anvil-router

go 1.26.8

require (
	github.com/lmittmann/tint v1.2.1
	github.com/pelletier/go-toml/v2 v2.4.3
)
