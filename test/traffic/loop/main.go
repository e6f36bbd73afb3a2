// Command loop sends requests at a steady rate and prints the summary as JSON: the test bed's curl loop
// (seed 000), bounded and counted.
//
//	go run ./test/traffic/loop -url http://$TESTBED_INGRESS/productpage -host bookinfo.example.com -rps 50 -duration 30s
package main

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"os/signal"
	"time"

	"github.com/istio-upgrade/kubectl-istio-upgrade/test/traffic"
)

func main() {
	var c traffic.Config
	flag.StringVar(&c.URL, "url", "", "where to send (http://HOST:PORT/PATH)")
	flag.StringVar(&c.Host, "host", "", "the Host header")
	flag.IntVar(&c.RPS, "rps", 50, "requests per second")
	flag.IntVar(&c.Max, "max", 0, "stop after this many requests (0: no bound but -duration)")
	flag.DurationVar(&c.Duration, "duration", 30*time.Second, "stop after this long")
	out := flag.String("out", "", "also write the summary to this file")
	flag.Parse()
	if c.URL == "" {
		flag.Usage()
		os.Exit(64)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	s := traffic.Run(ctx, c)
	b, _ := json.MarshalIndent(s, "", "  ")
	os.Stdout.Write(append(b, '\n'))
	if *out != "" {
		_ = os.WriteFile(*out, append(b, '\n'), 0o644)
	}
	if s.Failed > 0 {
		os.Exit(1)
	}
}
