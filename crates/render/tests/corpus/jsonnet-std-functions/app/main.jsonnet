local base = { replicas: 1, image: { repo: 'nginx', tag: '1.25' }, extra: { drop: 'me' } };
local patched = std.mergePatch(base, { image: { tag: '1.27' }, extra: null, debug: true });
{
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: {
    name: std.format('%s-%03d', ['config', 7]),
    annotations: { checksum: std.md5(std.manifestJson(patched)) },
  },
  data: {
    'app.yaml': std.manifestYamlDoc({ server: { port: 8080, hosts: ['a.example', 'b.example'] }, debug: false, empty: {} }),
    'patched.json': std.manifestJsonEx(patched, '  '),
    'stream.yaml': std.manifestYamlStream([{ a: 1 }, { b: [1, 2] }]),
    'settings.ini': std.manifestIni({ main: { x: 1 }, sections: { s1: { y: 'two' } } }),
    summary: std.join(',', std.sort(std.uniq(std.sort(['b', 'a', 'c', 'a'])))),
    escaped: std.escapeStringJson('quote " and \\ backslash'),
    b64: std.base64('capstan'),
    fmt: std.format('%(name)s=%(value)0.2f', { name: 'pi', value: 3.14159 }),
    lines: std.lines(['one', 'two']),
    replaced: std.strReplace('a-b-c', '-', '_'),
    parsed: std.toString(std.parseJson('{"n": [1, 2, {"m": null}]}')),
    numbers: std.toString([1 / 4, 1e3, std.pow(2, 10), std.floor(7.9), -0.5]),
  },
}
