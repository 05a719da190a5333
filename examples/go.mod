module github.com/asyncreq/asyncreq/examples

go 1.26.0

require (
	github.com/asyncreq/asyncreq v0.0.0
	github.com/asyncreq/asyncreq/nats v0.0.0
	github.com/asyncreq/asyncreq/postgres v0.0.0
	github.com/asyncreq/asyncreq/rabbitmq v0.0.0
	github.com/asyncreq/asyncreq/redis v0.0.0
	github.com/asyncreq/asyncreq/sqlite v0.0.0
	github.com/schollz/progressbar/v3 v3.19.1
	golang.org/x/term v0.44.0
)

require (
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/jackc/pgx/v5 v5.12.0 // indirect
	github.com/mitchellh/colorstring v0.0.0-20190213212951-d06e56a500db // indirect
	github.com/rivo/uniseg v0.4.7 // indirect
	github.com/stretchr/testify v1.12.1 // indirect
	go.uber.org/goleak v1.3.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/text v0.41.0 // indirect
)

replace (
	github.com/asyncreq/asyncreq => ../
	github.com/asyncreq/asyncreq/nats => ../nats
	github.com/asyncreq/asyncreq/postgres => ../postgres
	github.com/asyncreq/asyncreq/rabbitmq => ../rabbitmq
	github.com/asyncreq/asyncreq/redis => ../redis
	github.com/asyncreq/asyncreq/sqlite => ../sqlite
)
