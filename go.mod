module github.com/asyncreq/asyncreq

go 1.25

require (
	github.com/stretchr/testify v1.12.1
	go.uber.org/goleak v1.3.0
	go.uber.org/mock v0.6.0
)

require go.yaml.in/yaml/v3 v3.0.5 // indirect
