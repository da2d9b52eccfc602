// Command etcd is etcd from the go.etcd.io/etcd/server/v3 module the suite's
// module pins, for the image the aggregator spec runs its sample API
// server's storage in.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
