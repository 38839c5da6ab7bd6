#!/usr/bin/env bash
# Makes the emulator's TLS material: a test CA, a server certificate for 127.0.0.1 and localhost
# signed by it (valid for 100 years), and a second CA that signed nothing. Run from this folder;
# the CA keys are thrown away, so nothing else can ever be signed by them.
set -euo pipefail
cd "$(dirname "$0")"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 36500 \
  -subj "/CN=bedrock-plugin test CA" -config san.cnf -extensions ca
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr -subj "/CN=localhost" -config san.cnf
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 36500 -extfile san.cnf -extensions server
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout other-ca.key -out other-ca.pem -days 36500 \
  -subj "/CN=some other CA" -config san.cnf -extensions ca
rm -f server.csr ca.srl ca.key other-ca.key
