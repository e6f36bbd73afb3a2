
2026-11-23T01:00:38Z/9è
8type.googleapis.com/envoy.service.status.v3.ClientConfig«
w
#ledger-v1-64d494cb99-7bhmt.paymentsP


CLUSTER_ID
Kubernetes

ISTIO_VERSION1.30.0

	NAMESPACE
paymentsD
3type.googleapis.com/envoy.config.cluster.v3.Cluster*¶ ŽØ¥ÏòD0S
Btype.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment*· ŽØªé›"0F
5type.googleapis.com/envoy.config.listener.v3.Listener*¶ ŽØ‡ìÛF0M
<type.googleapis.com/envoy.config.route.v3.RouteConfiguration*¶ ŽØ¡Ì™F0Þ
8type.googleapis.com/envoy.service.status.v3.ClientConfig¡
m
node-agent-x5w45.paymentsP


CLUSTER_ID
Kubernetes

ISTIO_VERSION1.30.0

	NAMESPACE
paymentsD
3type.googleapis.com/envoy.config.cluster.v3.Cluster*¶ ŽØ òæ}0S
Btype.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment*· ŽØÄ½Ï!0F
5type.googleapis.com/envoy.config.listener.v3.Listener*¶ ŽØƒ¦0M
<type.googleapis.com/envoy.config.route.v3.RouteConfiguration*¶ ŽØªúŒ0á
8type.googleapis.com/envoy.service.status.v3.ClientConfig¤
m
cart-v1-7cc44f45cb-ls2l8.shopL


CLUSTER_ID
Kubernetes

ISTIO_VERSION1.30.0

	NAMESPACEshopE
3type.googleapis.com/envoy.config.cluster.v3.Cluster*¶ ŽØã‰ä0S
Btype.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment*· ŽØ¶Ü!0G
5type.googleapis.com/envoy.config.listener.v3.Listener*¶ ŽØ¹•½’0N
<type.googleapis.com/envoy.config.route.v3.RouteConfiguration*¶ ŽØÑ™–’0Ñ
8type.googleapis.com/envoy.service.status.v3.ClientConfig”
\
cache-1.shopL


CLUSTER_ID
Kubernetes

ISTIO_VERSION1.30.0

	NAMESPACEshopE
3type.googleapis.com/envoy.config.cluster.v3.Cluster*Â ŽØ¶¸“Ö0T
Btype.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment*Â ŽØ×¼ªÚ0G
5type.googleapis.com/envoy.config.listener.v3.Listener*Â ŽØ¦Í Û0N
<type.googleapis.com/envoy.config.route.v3.RouteConfiguration*Â ŽØƒñëÚ0è
8type.googleapis.com/envoy.service.status.v3.ClientConfig«
w
#details-v1-66b68b486-55fqz.bookinfoP


CLUSTER_ID
Kubernetes

ISTIO_VERSION1.30.0

	NAMESPACE
bookinfoD
3type.googleapis.com/envoy.config.cluster.v3.Cluster*¶ ŽØ¢ä´'0S
Btype.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment*· ŽØÎºà!0F
5type.googleapis.com/envoy.config.listener.v3.Listener*¶ ŽØÂ–(0M
<type.googleapis.com/envoy.config.route.v3.RouteConfiguration*¶ ŽØÊÒ(0é
8type.googleapis.com/envoy.service.status.v3.ClientConfig¬
x
$reviews-v1-5c6b76bd8c-4xrd2.bookinfoP


CLUSTER_ID
Kubernetes

ISTIO_VERSION1.30.0

	NAMESPACE
bookinfoD
3type.googleapis.com/envoy.config.cluster.v3.Cluster*¶ ŽØ ™Ø#0S
Btype.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment*· ŽØêËâ!0F
5type.googleapis.com/envoy.config.listener.v3.Listener*¶ ŽØ¶‘ø$0M
<type.googleapis.com/envoy.config.route.v3.RouteConfiguration*¶ ŽØï›„%0þ
8type.googleapis.com/envoy.service.status.v3.ClientConfigÁ
Œ
3istio-ingressgateway-6cbf7698fb-bvr5f.istio-ingressU


CLUSTER_ID
Kubernetes

ISTIO_VERSION1.30.0

	NAMESPACEistio-ingressD
3type.googleapis.com/envoy.config.cluster.v3.Cluster*¶ ŽØÕ—ý&0S
Btype.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment*· ŽØ äæ!0F
5type.googleapis.com/envoy.config.listener.v3.Listener*¶ ŽØ†§'0M
<type.googleapis.com/envoy.config.route.v3.RouteConfiguration*¶ ŽØƒó©'0å
8type.googleapis.com/envoy.service.status.v3.ClientConfig¨
t
 api-v1-7c45bc679b-wbpsm.paymentsP


CLUSTER_ID
Kubernetes

ISTIO_VERSION1.30.0

	NAMESPACE
paymentsD
3type.googleapis.com/envoy.config.cluster.v3.Cluster*¶ ŽØœŒ¡*0S
Btype.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment*· ŽØ¯†é!0F
5type.googleapis.com/envoy.config.listener.v3.Listener*¶ ŽØ”éÔ*0M
<type.googleapis.com/envoy.config.route.v3.RouteConfiguration*¶ ŽØñ©Ú*0Þ
8type.googleapis.com/envoy.service.status.v3.ClientConfig¡
m
node-agent-dmsws.paymentsP


CLUSTER_ID
Kubernetes

ISTIO_VERSION1.30.0

	NAMESPACE
paymentsD
3type.googleapis.com/envoy.config.cluster.v3.Cluster*¶ ŽØš¡Ð10S
Btype.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment*· ŽØŠ”ï!0F
5type.googleapis.com/envoy.config.listener.v3.Listener*¶ ŽØ® ­30M
<type.googleapis.com/envoy.config.route.v3.RouteConfiguration*¶ ŽØÂþé20Í
8type.googleapis.com/envoy.service.status.v3.ClientConfig
\
cache-0.shopL


CLUSTER_ID
Kubernetes

ISTIO_VERSION1.30.0

	NAMESPACEshopD
3type.googleapis.com/envoy.config.cluster.v3.Cluster*¶ ŽØ­ïòW0S
Btype.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment*· ŽØˆ“ñ!0F
5type.googleapis.com/envoy.config.listener.v3.Listener*¶ ŽØý…³Y0M
<type.googleapis.com/envoy.config.route.v3.RouteConfiguration*¶ ŽØñ”‹Y0á
8type.googleapis.com/envoy.service.status.v3.ClientConfig¤
m
cart-v1-7cc44f45cb-r77b5.shopL


CLUSTER_ID
Kubernetes

ISTIO_VERSION1.30.0

	NAMESPACEshopE
3type.googleapis.com/envoy.config.cluster.v3.Cluster*¶ ŽØ¢Ý¨·0S
Btype.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment*· ŽØâ—ó!0G
5type.googleapis.com/envoy.config.listener.v3.Listener*¶ ŽØùÝ°º0N
<type.googleapis.com/envoy.config.route.v3.RouteConfiguration*¶ ŽØ’™Õ¹0è
8type.googleapis.com/envoy.service.status.v3.ClientConfig«
w
#details-v1-66b68b486-9jmqj.bookinfoP


CLUSTER_ID
Kubernetes

ISTIO_VERSION1.30.0

	NAMESPACE
bookinfoD
3type.googleapis.com/envoy.config.cluster.v3.Cluster*¶ ŽØ¾¯¡+0S
Btype.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment*· ŽØ ¸÷!0F
5type.googleapis.com/envoy.config.listener.v3.Listener*¶ ŽØ†èÖ+0M
<type.googleapis.com/envoy.config.route.v3.RouteConfiguration*¶ ŽØŠÖÞ+0í
8type.googleapis.com/envoy.service.status.v3.ClientConfig°
|
(productpage-v1-7ff968c4f6-6wsl4.bookinfoP


CLUSTER_ID
Kubernetes

ISTIO_VERSION1.30.0

	NAMESPACE
bookinfoD
3type.googleapis.com/envoy.config.cluster.v3.Cluster*¶ ŽØ¨Áˆ#0S
Btype.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment*· ŽØçæù!0F
5type.googleapis.com/envoy.config.listener.v3.Listener*¶ ŽØÕ¶¼#0M
<type.googleapis.com/envoy.config.route.v3.RouteConfiguration*¶ ŽØ‘ÐÉ#0é
8type.googleapis.com/envoy.service.status.v3.ClientConfig¬
x
$reviews-v1-5c6b76bd8c-vbzz4.bookinfoP


CLUSTER_ID
Kubernetes

ISTIO_VERSION1.30.0

	NAMESPACE
bookinfoD
3type.googleapis.com/envoy.config.cluster.v3.Cluster*¶ ŽØÂÚÇ$0S
Btype.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment*· ŽØÂ¶Ù!0F
5type.googleapis.com/envoy.config.listener.v3.Listener*¶ ŽØ¤³ñ$0M
<type.googleapis.com/envoy.config.route.v3.RouteConfiguration*¶ ŽØ—™ü$0å
8type.googleapis.com/envoy.service.status.v3.ClientConfig¨
t
 api-v1-7c45bc679b-x8nqw.paymentsP


CLUSTER_ID
Kubernetes

ISTIO_VERSION1.30.0

	NAMESPACE
paymentsD
3type.googleapis.com/envoy.config.cluster.v3.Cluster*¶ ŽØž± )0S
Btype.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment*· ŽØ“‡„"0F
5type.googleapis.com/envoy.config.listener.v3.Listener*¶ ŽØˆžÔ)0M
<type.googleapis.com/envoy.config.route.v3.RouteConfiguration*¶ ŽØ×êÜ)0Þ
8type.googleapis.com/envoy.service.status.v3.ClientConfig¡
m
node-agent-s5rg4.paymentsP


CLUSTER_ID
Kubernetes

ISTIO_VERSION1.30.0

	NAMESPACE
paymentsD
3type.googleapis.com/envoy.config.cluster.v3.Cluster*¶ ŽØ€úûj0S
Btype.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment*· ŽØ¤ü…"0F
5type.googleapis.com/envoy.config.listener.v3.Listener*¶ ŽØ§¹Õl0M
<type.googleapis.com/envoy.config.route.v3.RouteConfiguration*¶ ŽØŸÿ›l0å
8type.googleapis.com/envoy.service.status.v3.ClientConfig¨
q
!frontend-v1-849f5d7f98-wdqbt.shopL


CLUSTER_ID
Kubernetes

ISTIO_VERSION1.30.0

	NAMESPACEshopE
3type.googleapis.com/envoy.config.cluster.v3.Cluster*¶ ŽØÚ‡¤Ý0S
Btype.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment*· ŽØœø‡"0G
5type.googleapis.com/envoy.config.listener.v3.Listener*¶ ŽØÃÚíÞ0N
<type.googleapis.com/envoy.config.route.v3.RouteConfiguration*¶ ŽØÛ¿¥Þ0í
8type.googleapis.com/envoy.service.status.v3.ClientConfig°
|
(productpage-v1-7ff968c4f6-r8wl5.bookinfoP


CLUSTER_ID
Kubernetes

ISTIO_VERSION1.30.0

	NAMESPACE
bookinfoD
3type.googleapis.com/envoy.config.cluster.v3.Cluster*¶ ŽØ†ñ$0S
Btype.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment*· ŽØéÛ‰"0F
5type.googleapis.com/envoy.config.listener.v3.Listener*¶ ŽØ‘Â¶$0M
<type.googleapis.com/envoy.config.route.v3.RouteConfiguration*¶ ŽØ èº$0é
8type.googleapis.com/envoy.service.status.v3.ClientConfig¬
x
$ratings-v1-7c7687bd78-tvvb6.bookinfoP


CLUSTER_ID
Kubernetes

ISTIO_VERSION1.30.0

	NAMESPACE
bookinfoD
3type.googleapis.com/envoy.config.cluster.v3.Cluster*¶ ŽØÏä’(0S
Btype.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment*· ŽØ”ñ"0F
5type.googleapis.com/envoy.config.listener.v3.Listener*¶ ŽØêö¿(0M
<type.googleapis.com/envoy.config.route.v3.RouteConfiguration*¶ ŽØÙÍÉ(0å
8type.googleapis.com/envoy.service.status.v3.ClientConfig¨
q
!frontend-v1-849f5d7f98-k9cnb.shopL


CLUSTER_ID
Kubernetes

ISTIO_VERSION1.30.0

	NAMESPACEshopE
3type.googleapis.com/envoy.config.cluster.v3.Cluster*¶ ŽØÏì‹¤0S
Btype.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment*· ŽØã²“"0G
5type.googleapis.com/envoy.config.listener.v3.Listener*¶ ŽØÛöâ¥0N
<type.googleapis.com/envoy.config.route.v3.RouteConfiguration*¶ ŽØº­¦¥0å
8type.googleapis.com/envoy.service.status.v3.ClientConfig¨
q
!frontend-v1-849f5d7f98-vw847.shopL


CLUSTER_ID
Kubernetes

ISTIO_VERSION1.30.0

	NAMESPACEshopE
3type.googleapis.com/envoy.config.cluster.v3.Cluster*¶ ŽØî‰“Ê0S
Btype.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment*· ŽØ‡¬•"0G
5type.googleapis.com/envoy.config.listener.v3.Listener*¶ ŽØï¼çË0N
<type.googleapis.com/envoy.config.route.v3.RouteConfiguration*¶ ŽØù—³Ë0þ
8type.googleapis.com/envoy.service.status.v3.ClientConfigÁ
Œ
3istio-ingressgateway-6cbf7698fb-nqtmg.istio-ingressU


CLUSTER_ID
Kubernetes

ISTIO_VERSION1.30.0

	NAMESPACEistio-ingressD
3type.googleapis.com/envoy.config.cluster.v3.Cluster*¶ ŽØöÝö%0S
Btype.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment*· ŽØùª‘"0F
5type.googleapis.com/envoy.config.listener.v3.Listener*¶ ŽØœº‰&0M
<type.googleapis.com/envoy.config.route.v3.RouteConfiguration*¶ ŽØ ÀŠ&0è
8type.googleapis.com/envoy.service.status.v3.ClientConfig«
w
#ledger-v1-64d494cb99-6rw9x.paymentsP


CLUSTER_ID
Kubernetes

ISTIO_VERSION1.30.0

	NAMESPACE
paymentsD
3type.googleapis.com/envoy.config.cluster.v3.Cluster*¶ ŽØ†ä´&0S
Btype.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment*· ŽØ³’™"0F
5type.googleapis.com/envoy.config.listener.v3.Listener*¶ ŽØ¬¼Þ&0M
<type.googleapis.com/envoy.config.route.v3.RouteConfiguration*¶ ŽØªî&0"istio.io/debug/syncz*:2026-11-23T01:00:38Z/9b910f20e-2fe4-443d-96e8-d2b4f8fedcbe2Å
Â{"Component":"istiod","ID":"istiod-1-30-64ff96b7bb-z6llc","Info":{"version":"1.30.0","revision":"v0.0.0-20260423205519-b01690e6db7d","golang_version":"go1.26.8","status":"Clean","tag":"1.30.0"}}