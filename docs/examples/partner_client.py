#!/usr/bin/python3
"""A partner ministry's client of Hawiya's PartnerService, in Python.

Built only from Hawiya's .proto files with the stock gRPC toolchain
(Debian 12: python3-grpcio, python3-grpc-tools, python3-protobuf,
python3-cryptography): the stubs are generated at start into a temporary
folder, the call is made over mutual TLS with the partner's certificate, and
the receipt's Ed25519 signature is checked against the keys the server
publishes (AdminService.GetSigningKeys). See docs/PARTNERS.md.

Exit code: 0 MATCH, 1 another decision, 2 usage, 3 the receipt does not
verify, 10+N the server answered gRPC status N.
"""

import argparse
import importlib
import os
import subprocess
import sys
import tempfile


def generate_stubs(proto_dir, out_dir):
    """Runs grpc_tools.protoc on the three files the client needs."""
    include = ["-I" + proto_dir]
    # google/protobuf/timestamp.proto: Debian's libprotobuf-dev puts it in
    # /usr/include; newer grpc_tools wheels ship their own copy.
    for candidate in ("/usr/include",):
        if os.path.exists(os.path.join(candidate, "google/protobuf/timestamp.proto")):
            include.append("-I" + candidate)
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", *include,
         "--python_out=" + out_dir, "--grpc_python_out=" + out_dir,
         "hawiya/v1/types.proto", "hawiya/v1/admin.proto",
         "hawiya/v1/partner.proto"],
        check=True)
    sys.path.insert(0, out_dir)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="127.0.0.1:50051")
    parser.add_argument("--proto_dir", required=True,
                        help="Hawiya's proto/ folder")
    parser.add_argument("--ca", required=True, help="CA of the server (PEM)")
    parser.add_argument("--cert", required=True, help="partner certificate")
    parser.add_argument("--key", required=True, help="partner key")
    parser.add_argument("--national_id", required=True)
    parser.add_argument("--country", required=True)
    parser.add_argument("--given_latin", default="")
    parser.add_argument("--family_latin", default="")
    parser.add_argument("--date_of_birth", default="", help="YYYY-MM-DD")
    parser.add_argument("--purpose", default="BORDER_CROSSING")
    parser.add_argument("--purpose_text", default="python example")
    parser.add_argument("--request_id", default="py-1")
    args = parser.parse_args()

    import grpc  # python3-grpcio

    with tempfile.TemporaryDirectory() as gen:
        generate_stubs(args.proto_dir, gen)
        types_pb2 = importlib.import_module("hawiya.v1.types_pb2")
        partner_pb2 = importlib.import_module("hawiya.v1.partner_pb2")
        partner_grpc = importlib.import_module("hawiya.v1.partner_pb2_grpc")
        admin_pb2 = importlib.import_module("hawiya.v1.admin_pb2")
        admin_grpc = importlib.import_module("hawiya.v1.admin_pb2_grpc")

        def read(path):
            with open(path, "rb") as f:
                return f.read()

        credentials = grpc.ssl_channel_credentials(
            root_certificates=read(args.ca),
            private_key=read(args.key),
            certificate_chain=read(args.cert))
        with grpc.secure_channel(args.server, credentials) as channel:
            request = partner_pb2.VerifyCivilStatusRequest(
                request_id=args.request_id,
                purpose=partner_pb2.Purpose.Value(args.purpose),
                purpose_text=args.purpose_text,
                national_id=args.national_id,
                issuing_country=args.country)
            if args.given_latin or args.family_latin:
                request.name_latin.CopyFrom(types_pb2.PersonName(
                    given=args.given_latin, family=args.family_latin))
            if args.date_of_birth:
                year, month, day = (int(x) for x in args.date_of_birth.split("-"))
                request.date_of_birth.CopyFrom(
                    types_pb2.Date(year=year, month=month, day=day))
            try:
                response = partner_grpc.PartnerServiceStub(
                    channel).VerifyCivilStatus(request, timeout=30)
                keys = admin_grpc.AdminServiceStub(channel).GetSigningKeys(
                    admin_pb2.GetSigningKeysRequest(), timeout=30)
            except grpc.RpcError as error:
                print("error: %s: %s" % (error.code().name, error.details()),
                      file=sys.stderr)
                return 10 + error.code().value[0]

        decision = partner_pb2.VerifyCivilStatusResponse.Decision.Name(
            response.decision)
        print("decision:", decision)
        for check in response.checks:
            print("  %-14s %s%s" % (
                check.attribute,
                partner_pb2.AttributeCheck.Result.Name(check.result),
                " (similarity %.2f)" % check.similarity
                if check.attribute.startswith("name") and check.result in (
                    partner_pb2.AttributeCheck.MATCH,
                    partner_pb2.AttributeCheck.MISMATCH) else ""))
        for name in response.disclosed.attributes:
            print("  disclosed", name)

        # The receipt: Ed25519 over b"hawiya.receipt.v1\0" + payload bytes,
        # checked with the published key of its key_id.
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import (
            Ed25519PublicKey)
        receipt = response.receipt
        published = {k.key_id: k for k in keys.keys}
        if receipt.key_id not in published:
            print("receipt: unknown key", receipt.key_id, file=sys.stderr)
            return 3
        try:
            Ed25519PublicKey.from_public_bytes(
                published[receipt.key_id].public_key).verify(
                    receipt.signature, b"hawiya.receipt.v1\0" + receipt.payload)
        except InvalidSignature:
            print("receipt: signature does not verify", file=sys.stderr)
            return 3
        payload = partner_pb2.ReceiptPayload.FromString(receipt.payload)
        print("receipt: verified, key %s, request %s, decision %s" % (
            receipt.key_id, payload.request_id,
            partner_pb2.VerifyCivilStatusResponse.Decision.Name(
                payload.decision)))
        return 0 if decision == "MATCH" else 1


if __name__ == "__main__":
    sys.exit(main())
