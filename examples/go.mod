module github.com/asyncreq/asyncreq/examples

go 1.25

require (
	github.com/asyncreq/asyncreq v0.0.0
	github.com/asyncreq/asyncreq/nats v0.0.0
	github.com/asyncreq/asyncreq/postgres v0.0.0
	github.com/asyncreq/asyncreq/rabbitmq v0.0.0
	github.com/asyncreq/asyncreq/redis v0.0.0
	github.com/asyncreq/asyncreq/sqlite v0.0.0
)

replace (
	github.com/asyncreq/asyncreq => ../
	github.com/asyncreq/asyncreq/nats => ../nats
	github.com/asyncreq/asyncreq/postgres => ../postgres
	github.com/asyncreq/asyncreq/rabbitmq => ../rabbitmq
	github.com/asyncreq/asyncreq/redis => ../redis
	github.com/asyncreq/asyncreq/sqlite => ../sqlite
)
