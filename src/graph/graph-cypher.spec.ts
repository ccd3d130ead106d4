import { describe, expect, it } from '@jest/globals';
import {
  ALL_STATEMENTS,
  type CypherStatement,
  MOVE_BRANCH_HEAD,
  READ_STATEMENTS,
  SCHEMA_STATEMENTS,
  WRITE_CHANGES,
  WRITE_COMMITS,
  WRITE_PARENTS,
} from './graph-cypher.js';

const schemaStatements: readonly CypherStatement<object>[] = SCHEMA_STATEMENTS;
const dataStatements = ALL_STATEMENTS.filter((s) => !schemaStatements.includes(s));

describe('graph Cypher', () => {
  it('names every statement once', () => {
    const names = ALL_STATEMENTS.map((s) => s.name);
    expect(new Set(names).size).toBe(names.length);
  });

  it('creates the schema idempotently, with composite keys where one property is not unique', () => {
    for (const s of SCHEMA_STATEMENTS)
      expect(s.text).toMatch(/^CREATE (CONSTRAINT|INDEX) \w+ IF NOT EXISTS FOR /);
    const constraints = SCHEMA_STATEMENTS.map((s) => s.text).filter((t) => t.includes('CONSTRAINT'));
    expect(constraints).toEqual(
      expect.arrayContaining([
        expect.stringContaining('(c:Commit) REQUIRE (c.repositoryId, c.sha) IS UNIQUE'),
        expect.stringContaining('(f:File) REQUIRE (f.repositoryId, f.path) IS UNIQUE'),
        expect.stringContaining('(b:Branch) REQUIRE (b.repositoryId, b.name) IS UNIQUE'),
        expect.stringContaining('(p:Person) REQUIRE (p.tenantId, p.email) IS UNIQUE'),
      ]),
    );
  });

  it('never creates what a retry would duplicate: MERGE, not CREATE', () => {
    for (const s of dataStatements) expect(s.text).not.toMatch(/\bCREATE\b/);
  });

  it('takes values only as parameters', () => {
    for (const s of ALL_STATEMENTS) {
      expect(s.text).not.toMatch(/\$\{/);
      // No quoted literals besides none at all: every value comes in through $parameters.
      expect(s.text).not.toMatch(/'[^']*'|"[^"]*"/);
    }
  });

  it('scopes every read by the tenant', () => {
    for (const s of READ_STATEMENTS) expect(s.text).toContain('tenantId: $tenantId');
  });

  it('puts the tenant in every node pattern that has properties', () => {
    let checked = 0;
    for (const s of dataStatements) {
      for (const [pattern] of s.text.matchAll(/\(\w*:\w+(?:\|\w+)* \{[^}]*\}\)/g)) {
        expect(`${s.name}: ${pattern}`).toMatch(/tenantId: \$tenantId/);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(30);
  });

  it('moves the HEAD in one statement only, and converts integers explicitly', () => {
    const headWriters = dataStatements.filter((s) => /MERGE \(b\)-\[:HEAD\]/.test(s.text));
    expect(headWriters).toEqual([MOVE_BRANCH_HEAD]);
    expect(WRITE_PARENTS.text).toContain('toInteger(row.index)');
    expect(WRITE_CHANGES.text).toContain('toInteger(row.additions)');
    expect(WRITE_COMMITS.text).toContain('datetime(row.committedAt)');
    for (const s of dataStatements.filter((x) => x.text.includes('LIMIT'))) {
      expect(s.text).toMatch(/LIMIT toInteger\(\$\w+\)/);
    }
  });
});
