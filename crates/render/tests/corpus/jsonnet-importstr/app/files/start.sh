#!/bin/sh
echo "starting $1"
