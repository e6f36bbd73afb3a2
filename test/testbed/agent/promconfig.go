package main

import (
	"bytes"
	"fmt"
	"os"

	"sigs.k8s.io/yaml"
)

// promConfig writes the Prometheus configuration of Istio's addon (samples/addons/prometheus.yaml,
// the ConfigMap's prometheus.yml) for the Prometheus the bed runs outside the cluster: its pod jobs
// (kubernetes-pods and -slow, which keep pods annotated prometheus.io/scrape and relabel namespace and
// pod in) discover pods through kubeconfig and scrape them through the agent's scrape proxy; its own
// job scrapes it where it listens. Jobs for the apiserver, kubelets and Service endpoints need
// in-cluster credentials and node networking the bed has not: they are left out.
func promConfig(addon, out, kubeconfig, proxyURL, self string) error {
	raw, err := os.ReadFile(addon)
	if err != nil {
		return err
	}
	var cfg map[string]any
	for _, doc := range bytes.Split(raw, []byte("\n---")) {
		var obj struct {
			Kind     string                `json:"kind"`
			Metadata struct{ Name string } `json:"metadata"`
			Data     map[string]string     `json:"data"`
		}
		if yaml.Unmarshal(doc, &obj) != nil || obj.Kind != "ConfigMap" || obj.Metadata.Name != "prometheus" {
			continue
		}
		if err := yaml.Unmarshal([]byte(obj.Data["prometheus.yml"]), &cfg); err != nil {
			return fmt.Errorf("%s: prometheus.yml: %w", addon, err)
		}
	}
	if cfg == nil {
		return fmt.Errorf("%s: no ConfigMap prometheus with prometheus.yml", addon)
	}
	jobs, _ := cfg["scrape_configs"].([]any)
	var kept []any
	for _, j := range jobs {
		job, _ := j.(map[string]any)
		switch {
		case job["job_name"] == "prometheus":
			job["static_configs"] = []any{map[string]any{"targets": []any{self}}}
		case podJob(job):
			for _, sd := range job["kubernetes_sd_configs"].([]any) {
				sd.(map[string]any)["kubeconfig_file"] = kubeconfig
			}
			job["proxy_url"] = proxyURL
		default:
			continue
		}
		kept = append(kept, job)
	}
	if len(kept) == 0 {
		return fmt.Errorf("%s: no pod scrape job in prometheus.yml", addon)
	}
	cfg["scrape_configs"] = kept
	delete(cfg, "rule_files") // the addon's rule files live in its pod's volume; the bed has none
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return err
	}
	return os.WriteFile(out, b, 0o644)
}

// podJob says whether job discovers pods only.
func podJob(job map[string]any) bool {
	sds, _ := job["kubernetes_sd_configs"].([]any)
	for _, sd := range sds {
		if m, _ := sd.(map[string]any); m["role"] != "pod" {
			return false
		}
	}
	return len(sds) > 0
}
