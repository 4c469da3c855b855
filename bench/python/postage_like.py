"""The Python Postage 1.2.1 baseline of bench/python.bench.ts, written for pika 1.x.

Not Postage's code: a minimal program that does, per message and per call, what Postage
1.2.1 does at its defaults, so that its rates can be compared with postaged's in one run:

- consumer (GenericConsumer + MessageProcessor): a BlockingConnection, the queue declared
  non-durable and auto-delete and bound to `N/rr` on `generic-application-exchange`,
  `basic_qos(prefetch_count=1)`, then per message: `json.loads`, look the handlers up by
  (category, type, name), a deep copy of `content` for each handler, the handler, and one
  `basic_ack` per message;
- responder: the same consumer answering RPC commands: the result encoded as a
  `MessageResult` body and published to the default exchange with `routing_key=reply_to`
  and no properties at all (no correlation id), then the ack;
- caller (GenericProducer._rpc_send): per call a fresh server-named exclusive, auto-delete
  reply queue (`queue_declare`), the request published with `reply_to` and no correlation
  id, a consumer on the reply queue with a timeout, `stop_consuming` on the first reply
  (which cancels the consumer, so the broker deletes the queue).

Usage (prints one JSON line on stdout):
  postage_like.py consume URL QUEUE N     drain N messages already in QUEUE
  postage_like.py respond URL NAME        serve RPC `echo` on NAME/rr until killed ("ready" when consuming)
  postage_like.py call URL KEY N          N sequential RPC `echo` calls to KEY
"""

import copy
import getpass
import json
import os
import socket
import sys
import time

import pika

EXCHANGE = 'generic-application-exchange'


def fingerprint(name, vhost):
    return {'name': name, 'type': 'bench', 'pid': str(os.getpid()), 'host': socket.gethostname(),
            'user': getpass.getuser(), 'vhost': vhost}


def body(type_, name, category, content, fp):
    return {'type': type_, 'name': name, 'category': category, 'version': '2',
            'fingerprint': fp, 'content': content, '_reserved': {}}


def connect(url):
    params = pika.URLParameters(url)
    return pika.BlockingConnection(params), params.virtual_host


def declare_exchange(channel):
    channel.exchange_declare(exchange=EXCHANGE, exchange_type='direct', passive=False,
                             durable=True, auto_delete=False)


class Processor(object):
    """MessageProcessor's dispatch: handlers by (category, type, name), deep copies, acks."""

    def __init__(self, channel, fp):
        self.channel = channel
        self.fp = fp
        self.handlers = {}

    def on_message(self, channel, method, header, raw):
        decoded = json.loads(raw)
        category = decoded['category']
        key = (category, decoded['type'], decoded['name'])
        handlers = self.handlers.get(key, [])
        if category == 'message':
            for handler in handlers:
                handler(copy.deepcopy(decoded['content']))
        elif category == 'rpc' and handlers:
            content = {}
            content.update(decoded['content'])
            handlers[-1](content, lambda value: self.reply(header, value))
        channel.basic_ack(delivery_tag=method.delivery_tag)

    def reply(self, header, value):
        # rpc_reply wraps a plain value in a MessageResult that carries no fingerprint.
        result = body('result', 'none', 'message', {'type': 'success', 'value': value, 'message': ''}, {})
        self.channel.basic_publish(exchange='', routing_key=header.reply_to, body=json.dumps(result))


def consume(url, queue, n):
    conn, vhost = connect(url)
    channel = conn.channel()
    declare_exchange(channel)
    channel.queue_declare(queue=queue, auto_delete=True)
    channel.queue_bind(queue=queue, exchange=EXCHANGE, routing_key=queue + '/rr')
    channel.basic_qos(prefetch_count=1)
    processor = Processor(channel, fingerprint(queue, vhost))
    state = {'count': 0, 'first': 0.0, 'last': 0.0, 'cpu0': 0.0}

    def hit(content):
        now = time.perf_counter()
        if state['count'] == 0:
            state['first'] = now
            state['cpu0'] = time.process_time()
        state['last'] = now
        state['count'] += 1
        if state['count'] >= n:
            channel.stop_consuming()

    processor.handlers[('message', 'command', 'hit')] = [hit]
    channel.basic_consume(queue=queue, on_message_callback=processor.on_message)
    channel.start_consuming()
    cpu = time.process_time() - state['cpu0']
    conn.close()
    elapsed = state['last'] - state['first']
    print(json.dumps({'count': state['count'], 'rate': (n - 1) / elapsed if elapsed > 0 else 0,
                      'cpuPerMessage': cpu * 1e6 / n}))


def respond(url, name):
    conn, vhost = connect(url)
    channel = conn.channel()
    declare_exchange(channel)
    channel.queue_declare(queue=name, auto_delete=True)
    channel.queue_bind(queue=name, exchange=EXCHANGE, routing_key=name + '/rr')
    channel.basic_qos(prefetch_count=1)
    processor = Processor(channel, fingerprint(name, vhost))

    def echo(content, reply):
        reply(content.get('parameters'))

    processor.handlers[('rpc', 'command', 'echo')] = [echo]
    channel.basic_consume(queue=name, on_message_callback=processor.on_message)
    print('ready', flush=True)
    channel.start_consuming()


def call(url, key, n, timeout=30):
    conn, vhost = connect(url)
    channel = conn.channel()
    declare_exchange(channel)
    fp = fingerprint('bench-caller', vhost)
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    for i in range(n):
        encoded = json.dumps(body('command', 'echo', 'rpc', {'parameters': {'n': i}}, fp))
        reply_to = channel.queue_declare(queue='', exclusive=True, auto_delete=True).method.queue
        props = pika.BasicProperties(content_type='application/json', reply_to=reply_to)
        channel.basic_publish(exchange=EXCHANGE, routing_key=key, body=encoded, properties=props)
        results = []

        def on_reply(ch, method, header, raw):
            reply = json.loads(raw)
            results.append(reply['content']['value'] if reply['content']['type'] == 'success' else None)
            ch.stop_consuming()

        def out_of_time():
            channel.stop_consuming()

        timer = conn.call_later(timeout, out_of_time)
        channel.basic_consume(queue=reply_to, on_message_callback=on_reply)
        channel.start_consuming()
        conn.remove_timeout(timer)
        if not results or results[0] != {'n': i}:
            sys.exit('call %d to %s: bad or no reply %r' % (i, key, results))
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    conn.close()
    print(json.dumps({'calls': n, 'rate': n / elapsed, 'cpuPerCall': cpu * 1e6 / n}))


if __name__ == '__main__':
    mode = sys.argv[1]
    if mode == 'consume':
        consume(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif mode == 'respond':
        respond(sys.argv[2], sys.argv[3])
    elif mode == 'call':
        call(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit('unknown mode %s' % mode)
