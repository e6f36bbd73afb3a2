//go:build e2e

package e2e

import "testing"

// scenario is one e2e test on a profile's bed.
type scenario struct {
	name string
	run  func(*testing.T)
}

// The istioctl profile's scenarios, in the order they run: each leaves the bed as the next expects.
// What fails fastest and changes nothing comes first; what needs request data (Prometheus scraping
// for minutes) comes after the scenarios that restore what they move; what moves the fixtures to the
// new revision for good comes after that; cleanup, which removes the old revision, comes last.
var istioctlScenarios = []scenario{
	// The bed and the plugin's contract, read-only or changing nothing.
	{"FixtureProxiesSynced", testFixtureProxiesSynced},
	{"VersionAndOutputContract", testVersionAndOutputContract},
	{"BadInputExitCodes", testBadInputExitCodes},
	{"UndoRestoresRecordedState", testUndoRestoresRecordedState},
	{"NewRevisionInjects", testNewRevisionInjects},
	{"PrecheckFixtures", testPrecheckFixtures},
	{"PrecheckAfterNewRevision", testPrecheckAfterNewRevision},
	{"PrecheckMissingPermissions", testPrecheckMissingPermissions},
	{"TrafficReachesProductpage", testTrafficReachesProductpage},
	{"XDSAddressModes", testXDSAddressModes},
	// The runner's lifecycle and its faults; each undoes what it moved.
	{"EngineLockSerialisesSteps", testEngineLockSerialisesSteps},
	{"EngineCancelResumeUndo", testEngineCancelResumeUndo},
	{"EngineYesOnEveryMutatingStep", testEngineYesOnEveryMutatingStep},
	{"EngineTokenNeverRecorded", testEngineTokenNeverRecorded},
	{"FaultKilledMigrationResumes", testFaultKilledMigrationResumes},
	{"FaultFrozenStepWritesNothingAfterTakeover", testFaultFrozenStepWritesNothingAfterTakeover},
	{"FaultApiserverPausedDuringAGate", testFaultApiserverPausedDuringAGate},
	{"FaultPlantedEntryIsNeverResumed", testFaultPlantedEntryIsNeverResumed},
	{"FaultFiveStepsStartedTogether", testFaultFiveStepsStartedTogether},
	{"UndoKeepsOutsideChangesAndRefusesDrift", testUndoKeepsOutsideChangesAndRefusesDrift},
	{"UndoRefusesAHandMadeEntry", testUndoRefusesAHandMadeEntry},
	{"MigrateNsNeverTakesSystemNamespaces", testMigrateNsNeverTakesSystemNamespaces},
	{"GitOpsManagedNamespaceWarnsWithThePatch", testGitOpsManagedNamespaceWarnsWithThePatch},
	{"TagMoveRestartAndUndo", testTagMoveRestartAndUndo},
	{"RBACDocumentedRolesRunMigrateNs", testRBACDocumentedRolesRunMigrateNs},
	// Gates on Istio's analysis and on the workloads' own requests: by now Prometheus has data.
	{"AnalysisPrecheckAndMigrateGate", testAnalysisPrecheckAndMigrateGate},
	{"MetricsGateInMigrateNs", testMetricsGateInMigrateNs},
	{"MetricsGateCatchesARouteOnlyTheOldRevisionSees", testMetricsGateCatchesARouteOnlyTheOldRevisionSees},
	{"PrecheckRequestData", testPrecheckRequestData},
	// The fixtures move to the new revision and stay there.
	{"MigrateNsBadInputChangesNothing", testMigrateNsBadInputChangesNothing},
	{"UnmanagedPodsAreNamed", testUnmanagedPodsAreNamed},
	{"MigrateNsServerDryRun", testMigrateNsServerDryRun},
	{"MigrateNsUndo", testMigrateNsUndo},
	{"MigrateNsFailureRollsBack", testMigrateNsFailureRollsBack},
	{"MigrateNsCanaryThenAll", testMigrateNsCanaryThenAll},
	// Gateways, then cleanup of the old revision once nothing depends on it.
	{"GatewayAPIGatewayBlocksCleanup", testGatewayAPIGatewayBlocksCleanup},
	{"MigrateGWDeployment", testMigrateGWDeployment},
	{"MigrateGWGatewayAPI", testMigrateGWGatewayAPI},
	{"GatewayCanaryShiftCleanupUndo", testGatewayCanaryShiftCleanupUndo},
}

// TestIstioctl is the istioctl profile (revision 1-30, tag prod-stable, the repository's fixtures).
// One scenario: go test -tags e2e -run 'TestIstioctl/MigrateNsUndo$' ./test/e2e
func TestIstioctl(t *testing.T) { runScenarios(t, istioctlScenarios) }

// TestHelm is the helm profile: seed 000 on Istio's own charts, from the non-revisioned default.
func TestHelm(t *testing.T) { runScenarios(t, []scenario{{"Seed000", testHelmSeed000}}) }

// TestAmbient is the ambient profile: istio-cni and ztunnel on Istio's charts, rolled node by node.
func TestAmbient(t *testing.T) { runScenarios(t, []scenario{{"Roll", testAmbientRoll}}) }

func runScenarios(t *testing.T, ss []scenario) {
	for _, s := range ss {
		t.Run(s.name, s.run)
	}
}
