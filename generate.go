package asyncreq

//go:generate go run go.uber.org/mock/mockgen@v0.6.0 -destination=mocks_test.go -package=asyncreq_test -typed . Store,Queue,Processor,Accepter,Watcher,UnenqueuedLister
