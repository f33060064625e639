"""Calls a gRPC server as a generic client does: it learns the services and message types from
the server's own reflection service, builds each request from JSON and prints each answer as
JSON. It knows nothing of Kinfold's .proto files.

Usage: grpc_reflect_client.py HOST:PORT CALLS_JSON | @CALLS_FILE

CALLS_JSON is a list; each item is one of
  {"call": "package.Service/Method", "request": {...}}   a unary call, request in proto JSON
  {"stream": "package.Service/Method", "request": {...}, "take": N, "timeout": S}
                                                         a server-streaming call: its answers
                                                         until it ends, N have come, or S seconds
  {"health": "package.Service"}                          grpc.health.v1.Health/Check
  {"list_services": "v1" | "v1alpha"}                    the services reflection lists
  {"file_containing_symbol": "package.Service", "version": "v1" | "v1alpha"}
Prints a JSON list of results, one per call:
  {"code": "OK", "response": {...}} (a stream: "responses": [...]) or
  {"code": "INVALID_ARGUMENT", "message": "...", "field_violations": [{"field": .., "description": ..}]}
"""
import json
import sys

import grpc
from google.protobuf import descriptor_pb2, json_format, message_factory
from google.protobuf.descriptor_pool import DescriptorPool
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from grpc_status import rpc_status

address, calls = sys.argv[1], sys.argv[2]
if calls.startswith("@"):
    with open(calls[1:]) as file:
        calls = file.read()
calls = json.loads(calls)
channel = grpc.insecure_channel(address)
# grpcio-reflection's descriptor database speaks v1alpha.
pool = DescriptorPool(ProtoReflectionDescriptorDatabase(channel))


def failure(error):
    result = {"code": error.code().name, "message": error.details()}
    status = rpc_status.from_call(error)
    if status is not None:
        violations = []
        for detail in status.details:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad_request = error_details_pb2.BadRequest()
                detail.Unpack(bad_request)
                violations.extend(
                    {"field": v.field, "description": v.description}
                    for v in bad_request.field_violations
                )
        result["field_violations"] = violations
    return result


def unary(path, request):
    service_name, method_name = path.split("/")
    method = pool.FindServiceByName(service_name).FindMethodByName(method_name)
    request_type = message_factory.GetMessageClass(method.input_type)
    response_type = message_factory.GetMessageClass(method.output_type)
    stub = channel.unary_unary(
        f"/{service_name}/{method_name}",
        request_serializer=request_type.SerializeToString,
        response_deserializer=response_type.FromString,
    )
    try:
        response = stub(json_format.ParseDict(request, request_type()), timeout=60)
    except grpc.RpcError as error:
        return failure(error)
    return {
        "code": "OK",
        "response": json_format.MessageToDict(
            response,
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
        ),
    }


def to_dict(message):
    return json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )


def streamed(path, request, take, timeout):
    service_name, method_name = path.split("/")
    method = pool.FindServiceByName(service_name).FindMethodByName(method_name)
    request_type = message_factory.GetMessageClass(method.input_type)
    response_type = message_factory.GetMessageClass(method.output_type)
    stub = channel.unary_stream(
        f"/{service_name}/{method_name}",
        request_serializer=request_type.SerializeToString,
        response_deserializer=response_type.FromString,
    )
    call = stub(json_format.ParseDict(request, request_type()), timeout=timeout)
    responses = []
    try:
        for response in call:
            responses.append(to_dict(response))
            if take is not None and len(responses) >= take:
                call.cancel()
                break
    except grpc.RpcError as error:
        result = failure(error)
        result["responses"] = responses
        return result
    return {"code": "OK", "responses": responses}


def reflect(version, request):
    # The v1 and v1alpha messages are the same on the wire; only the service name differs.
    stub = channel.stream_stream(
        f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    try:
        return next(iter(stub(iter([request]), timeout=30))), None
    except grpc.RpcError as error:
        return None, failure(error)


def run(call):
    if "call" in call:
        return unary(call["call"], call.get("request", {}))
    if "stream" in call:
        return streamed(
            call["stream"], call.get("request", {}), call.get("take"), call.get("timeout", 60)
        )
    if "health" in call:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=call["health"]), timeout=30
            )
        except grpc.RpcError as error:
            return failure(error)
        return {"code": "OK", "status": health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)}
    if "list_services" in call:
        answer, error = reflect(
            call["list_services"], reflection_pb2.ServerReflectionRequest(list_services="")
        )
        if error:
            return error
        return {"code": "OK", "services": [s.name for s in answer.list_services_response.service]}
    if "file_containing_symbol" in call:
        answer, error = reflect(
            call["version"],
            reflection_pb2.ServerReflectionRequest(
                file_containing_symbol=call["file_containing_symbol"]
            ),
        )
        if error:
            return error
        files = []
        for raw in answer.file_descriptor_response.file_descriptor_proto:
            file = descriptor_pb2.FileDescriptorProto.FromString(raw)
            files.append(
                {
                    "name": file.name,
                    "services": {
                        s.name: [m.name for m in s.method] for s in file.service
                    },
                }
            )
        return {"code": "OK", "files": files}
    raise SystemExit(f"unknown call {call}")


print(json.dumps([run(call) for call in calls]))
