module github.com/asyncreq/asyncreq/rabbitmq

go 1.25

require github.com/asyncreq/asyncreq v0.0.0

require (
	github.com/rabbitmq/amqp091-go v1.16.0 // indirect
	github.com/stretchr/testify v1.12.1 // indirect
	go.uber.org/goleak v1.3.0 // indirect
)

replace github.com/asyncreq/asyncreq => ../
