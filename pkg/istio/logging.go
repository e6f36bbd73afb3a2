package istio

import istiolog "istio.io/istio/pkg/log"

// ConfigureLogging sends istio.io/istio's logger (which also takes over klog and gRPC logs) to stderr:
// its default is stdout, which would corrupt -o json. Only errors are kept, except client-go's
// port-forward teardown chatter (klog), which says nothing a user can act on.
func ConfigureLogging() error {
	o := istiolog.DefaultOptions()
	o.OutputPaths = []string{"stderr"}
	o.ErrorOutputPaths = []string{"stderr"}
	o.SetDefaultOutputLevel(istiolog.DefaultScopeName, istiolog.ErrorLevel)
	o.SetDefaultOutputLevel("klog", istiolog.NoneLevel)
	return istiolog.Configure(o)
}

// ConfigureAnalyzerLogging is ConfigureLogging for the analysis companion: the analyzers' controllers log
// their informers' progress at info in scopes of their own; only errors reach the plugin.
func ConfigureAnalyzerLogging() error {
	o := istiolog.DefaultOptions()
	o.OutputPaths = []string{"stderr"}
	o.ErrorOutputPaths = []string{"stderr"}
	o.SetDefaultOutputLevel(istiolog.OverrideScopeName, istiolog.ErrorLevel)
	return istiolog.Configure(o)
}
