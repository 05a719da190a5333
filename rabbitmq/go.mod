module github.com/asyncreq/asyncreq/rabbitmq

go 1.25

require github.com/asyncreq/asyncreq v0.0.0

replace github.com/asyncreq/asyncreq => ../
