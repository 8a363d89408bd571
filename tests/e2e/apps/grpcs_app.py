"""A gRPC app served over TLS (`--app-protocol grpcs`) with grpcio and the official SDK's
generated AppCallback stubs: it answers health checks and echoes invocations. The
certificate and key are the files named by TLS_CERT and TLS_KEY."""

import os
from concurrent import futures

import grpc
from dapr.proto import appcallback_service_v1, appcallback_v1, common_v1
from google.protobuf import any_pb2


class Callbacks(appcallback_service_v1.AppCallbackServicer):
    def OnInvoke(self, request, context):
        text = f"secure {request.method}: {request.data.value.decode()}"
        return common_v1.InvokeResponse(data=any_pb2.Any(value=text.encode()),
                                        content_type="text/plain")

    def ListTopicSubscriptions(self, request, context):
        return appcallback_v1.ListTopicSubscriptionsResponse()


class Health(appcallback_service_v1.AppCallbackHealthCheckServicer):
    def HealthCheck(self, request, context):
        return appcallback_v1.HealthCheckResponse()


server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
appcallback_service_v1.add_AppCallbackServicer_to_server(Callbacks(), server)
appcallback_service_v1.add_AppCallbackHealthCheckServicer_to_server(Health(), server)
with open(os.environ["TLS_KEY"], "rb") as key, open(os.environ["TLS_CERT"], "rb") as cert:
    credentials = grpc.ssl_server_credentials([(key.read(), cert.read())])
server.add_secure_port(f"127.0.0.1:{os.environ['APP_PORT']}", credentials)
server.start()
print("serving over TLS", flush=True)
server.wait_for_termination()
