module github.com/asyncreq/asyncreq/postgres

go 1.25

require github.com/asyncreq/asyncreq v0.0.0

replace github.com/asyncreq/asyncreq => ../
