package helm

import (
	"io"
	"strconv"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	kubefake "helm.sh/helm/v3/pkg/kube/fake"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/storage"
	"helm.sh/helm/v3/pkg/storage/driver"
	"k8s.io/client-go/kubernetes"
)

// FakeActions runs the real helm actions on k's release Secrets (the storage Record and List use),
// with a kube client that applies nothing: unit tests see exactly the release history helm writes.
func FakeActions(k kubernetes.Interface) *Actions {
	return &Actions{Config: func(namespace string) (*action.Configuration, error) {
		return &action.Configuration{
			Releases:     storage.Init(driver.NewSecrets(k.CoreV1().Secrets(namespace))),
			KubeClient:   &kubefake.PrintingKubeClient{Out: io.Discard},
			Capabilities: chartutil.DefaultCapabilities,
			Log:          func(string, ...any) {},
		}, nil
	}}
}

// History is a release's versions with their status, oldest first ("1 superseded", "2 deployed").
func History(k kubernetes.Interface, namespace, name string) ([]string, error) {
	rels, err := storage.Init(driver.NewSecrets(k.CoreV1().Secrets(namespace))).History(name)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(rels))
	for _, r := range rels {
		if r.Version >= 1 && r.Version <= len(rels) {
			out[r.Version-1] = strconv.Itoa(r.Version) + " " + statusOf(r)
		}
	}
	return out, nil
}

// RecordChart stores a deployed release of the chart in dir with values, as helm install would have
// (nothing applied): fixtures for tests of steps that install from a release's chart.
func RecordChart(k kubernetes.Interface, namespace, name, dir string, values map[string]any) error {
	c, err := loader.Load(dir)
	if err != nil {
		return err
	}
	store := storage.Init(driver.NewSecrets(k.CoreV1().Secrets(namespace)))
	return store.Create(&release.Release{Name: name, Namespace: namespace, Version: 1,
		Info: &release.Info{Status: release.StatusDeployed}, Chart: c, Config: values})
}
