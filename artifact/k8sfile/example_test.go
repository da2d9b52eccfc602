package k8sfile_test

import (
	"fmt"

	"k2.dev/k2/artifact/k8sfile"
)

func ExampleParse() {
	src := `FROM k2/base:v1.37
ARG replicas=2
APP web image=nginx:1.27 port=80 replicas=${replicas}
MACHINES control-plane=1 worker=3 memory=4Gi
`
	f, _, err := k8sfile.Parse("K8sfile", []byte(src))
	if err != nil {
		fmt.Println(err)
		return
	}
	app := f.Layers[0].(*k8sfile.App)
	fmt.Println(f.From.Ref, app.Name, app.Replicas, len(f.Machines))
	// Output: k2/base:v1.37 web ${replicas} 2
}

func ExampleParse_errors() {
	src := `FROM scratch
INSTAL helm/repo/chart
APP web image=nginx replicas=two
`
	_, _, err := k8sfile.Parse("K8sfile", []byte(src))
	fmt.Println(err)
	// Output:
	// K8sfile:2:1: unknown instruction "INSTAL"; did you mean INSTALL?
	// K8sfile:3:30: APP: bad replicas: "two" is not a whole number; give a whole number ≥ 0: replicas=3
}

func ExampleExpand() {
	s, err := k8sfile.Expand("web-${env}-$${literal}", map[string]string{"env": "prod"})
	fmt.Println(s, err)
	// Output: web-prod-${literal} <nil>
}

func ExampleParseChartRef() {
	ref, _ := k8sfile.ParseChartRef("helm/k8s.io/metrics-server")
	fmt.Println(ref.Kind, ref.Alias, ref.Chart)
	// Output: alias k8s.io metrics-server
}
