package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

var portForwardGVR = schema.GroupVersionResource{Group: "kwok.x-k8s.io", Version: "v1alpha1", Resource: "portforwards"}

// istiodProc is one running pilot-discovery.
type istiodProc struct {
	pod  string
	cmd  *exec.Cmd
	done chan struct{}
}

// supervisor runs one pilot-discovery per revision that has an istiod pod, and keeps the pods'
// PortForward rules pointing at it.
type supervisor struct {
	dir, kubeconfig, ns string
	pilots              map[string]string
	ports               *portBook
	kc                  kubernetes.Interface
	dc                  dynamic.Interface
	pods                listersv1.PodLister

	mu    sync.Mutex
	procs map[string]*istiodProc
	kick  chan struct{}
}

func newSupervisor(dir, kubeconfig, ns string, pilots map[string]string, ports *portBook, kc kubernetes.Interface, dc dynamic.Interface) *supervisor {
	return &supervisor{dir: dir, kubeconfig: kubeconfig, ns: ns, pilots: pilots, ports: ports, kc: kc, dc: dc,
		procs: map[string]*istiodProc{}, kick: make(chan struct{}, 1)}
}

func (s *supervisor) register(ctx context.Context, f informers.SharedInformerFactory) {
	inf := f.Core().V1().Pods()
	s.pods = inf.Lister()
	poke := func(any) {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	_, _ = inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: poke, UpdateFunc: func(_, n any) { poke(n) }, DeleteFunc: poke})
	go func() {
		t := time.NewTicker(2 * time.Second) // also notices hold files and crashed processes
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-s.kick:
			case <-t.C:
			}
			if inf.Informer().HasSynced() {
				s.reconcile(ctx)
			}
		}
	}()
}

func isIstiod(p *corev1.Pod, ns string) bool {
	return p.Namespace == ns && p.Labels["app"] == "istiod" && p.DeletionTimestamp == nil
}

func revisionOf(p *corev1.Pod) string {
	if r := p.Labels["istio.io/rev"]; r != "" {
		return r
	}
	return "default"
}

// HoldFile, when present, keeps a revision's istiod stopped (the e2e suite's "istiod died").
func (s *supervisor) holdFile(rev string) string { return filepath.Join(s.dir, "istiod", rev+".hold") }

func (s *supervisor) reconcile(ctx context.Context) {
	all, err := s.pods.Pods(s.ns).List(everything)
	if err != nil {
		return
	}
	byRev := map[string][]*corev1.Pod{}
	for _, p := range all {
		if isIstiod(p, s.ns) {
			byRev[revisionOf(p)] = append(byRev[revisionOf(p)], p)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for rev, pods := range byRev {
		sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
		pod := pods[0]
		for _, p := range pods {
			s.ensurePortForward(ctx, p, s.ports.get(rev))
		}
		_, held := os.Stat(s.holdFile(rev))
		proc := s.procs[rev]
		if held == nil {
			if proc != nil {
				log.Printf("istiod %s: held, stopping", rev)
				s.stop(rev)
			}
			continue
		}
		if proc != nil {
			select {
			case <-proc.done:
				log.Printf("istiod %s exited; restarting", rev)
				delete(s.procs, rev)
				proc = nil
			default:
			}
		}
		if proc != nil && proc.pod != pod.Name {
			log.Printf("istiod %s: pod is now %s, restarting", rev, pod.Name)
			s.stop(rev)
			proc = nil
		}
		if proc == nil {
			if err := s.start(rev, pod); err != nil {
				log.Printf("istiod %s: %v", rev, err)
			}
		}
	}
	for rev := range s.procs {
		if len(byRev[rev]) == 0 {
			log.Printf("istiod %s: no pod left, stopping", rev)
			s.stop(rev)
		}
	}
	s.prunePortForwards(ctx, all)
}

func (s *supervisor) binaryFor(pod *corev1.Pod) (string, string, error) {
	tag := ""
	for _, c := range pod.Spec.Containers {
		if i := strings.LastIndex(c.Image, ":"); i > 0 && (c.Name == "discovery" || tag == "") {
			tag, _, _ = strings.Cut(c.Image[i+1:], "-distroless") // the ambient profile's image variant
		}
	}
	if b, ok := s.pilots[tag]; ok {
		return b, tag, nil
	}
	return "", tag, fmt.Errorf("no pilot-discovery build for image tag %q (have %v)", tag, s.pilots)
}

func (s *supervisor) start(rev string, pod *corev1.Pod) error {
	bin, tag, err := s.binaryFor(pod)
	if err != nil {
		return err
	}
	p := s.ports.get(rev)
	work := filepath.Join(s.dir, "istiod", rev+"-work")
	_ = os.RemoveAll(work)
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(s.dir, "logs", "istiod-"+rev+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, "discovery", "--kubeconfig", s.kubeconfig, "--domain", "cluster.local",
		"--httpAddr", addr(p.HTTP), "--grpcAddr", addr(p.GRPC), "--secureGRPCAddr", addr(p.SecureGRPC),
		"--httpsAddr", addr(p.HTTPS), "--monitoringAddr", addr(p.Monitoring), "--ctrlz_port", strconv.Itoa(p.Ctrlz),
		"--ctrlz_address", "127.0.0.1")
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "POD_NAMESPACE="+s.ns, "REVISION="+rev, "POD_NAME="+pod.Name, "CLUSTER_ID=Kubernetes",
		"ISTIOD_CUSTOM_HOST=localhost")
	cmd.Env = append(cmd.Env, podEnv(pod, rev)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	s.procs[rev] = &istiodProc{pod: pod.Name, cmd: cmd, done: done}
	_ = os.WriteFile(filepath.Join(s.dir, "istiod", rev+".pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
	_ = os.WriteFile(filepath.Join(s.dir, "istiod", rev+".http-port"), []byte(strconv.Itoa(p.HTTP)), 0o644)
	log.Printf("istiod %s: started pilot-discovery %s as pod %s (pid %d, xds %d)", rev, tag, pod.Name, cmd.Process.Pid, p.GRPC)
	return nil
}

// podEnv is what istiod takes from its pod's env: the webhook configurations it keeps (caBundle, failure policy)
// (istioctl and the Helm chart name them differently for the non-revisioned istiod).
func podEnv(pod *corev1.Pod, rev string) []string {
	inj := "istio-sidecar-injector-" + rev
	if rev == "default" {
		inj = "istio-sidecar-injector"
	}
	out := []string{"INJECTION_WEBHOOK_CONFIG_NAME=" + inj}
	for _, c := range pod.Spec.Containers {
		if c.Name != "discovery" {
			continue
		}
		for _, e := range c.Env {
			// The webhook names, and the ambient profile's switches (PILOT_ENABLE_AMBIENT): without them
			// istiod refuses ztunnels and deploys no waypoint.
			if (e.Name == "INJECTION_WEBHOOK_CONFIG_NAME" || e.Name == "VALIDATION_WEBHOOK_CONFIG_NAME" || strings.Contains(e.Name, "AMBIENT")) && e.Value != "" {
				out = append(out, e.Name+"="+e.Value) // later entries win in exec's environment
			}
		}
	}
	return out
}

func (s *supervisor) stop(rev string) {
	proc := s.procs[rev]
	if proc == nil {
		return
	}
	_ = syscall.Kill(-proc.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-proc.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-proc.cmd.Process.Pid, syscall.SIGKILL)
		<-proc.done
	}
	delete(s.procs, rev)
	_ = os.Remove(filepath.Join(s.dir, "istiod", rev+".pid"))
}

func (s *supervisor) stopAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for rev := range s.procs {
		s.stop(rev)
	}
}

func addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// ensurePortForward maps the istiod pod's ports to its revision's local process.
func (s *supervisor) ensurePortForward(ctx context.Context, pod *corev1.Pod, p Ports) {
	fw := func(port, target int) map[string]any {
		return map[string]any{"ports": []any{int64(port)}, "target": map[string]any{"address": "127.0.0.1", "port": int64(target)}}
	}
	want := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "PortForward",
		"metadata": map[string]any{"name": pod.Name, "namespace": pod.Namespace, "labels": map[string]any{"app.kubernetes.io/managed-by": "testbed-agent"}},
		"spec":     map[string]any{"forwards": []any{fw(15012, p.SecureGRPC), fw(15010, p.GRPC), fw(15014, p.Monitoring), fw(15017, p.HTTPS), fw(8080, p.HTTP)}},
	}}
	ri := s.dc.Resource(portForwardGVR).Namespace(pod.Namespace)
	if _, err := ri.Get(ctx, pod.Name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		if _, err := ri.Create(ctx, want, metav1.CreateOptions{}); err != nil {
			log.Printf("portforward %s: %v", pod.Name, err)
		}
	}
}

func (s *supervisor) prunePortForwards(ctx context.Context, pods []*corev1.Pod) {
	live := map[string]bool{}
	for _, p := range pods {
		if isIstiod(p, s.ns) {
			live[p.Name] = true
		}
	}
	ri := s.dc.Resource(portForwardGVR).Namespace(s.ns)
	l, err := ri.List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=testbed-agent"})
	if err != nil {
		return
	}
	for _, pf := range l.Items {
		if !live[pf.GetName()] {
			_ = ri.Delete(ctx, pf.GetName(), metav1.DeleteOptions{})
		}
	}
}
