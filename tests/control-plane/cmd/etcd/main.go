// Command etcd is etcd's own server, built from go.etcd.io/etcd/server/v3 at
// the version k8s.io/kubernetes pins, so the control plane needs no download.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
