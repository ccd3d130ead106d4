import js from '@eslint/js';
import prettier from 'eslint-config-prettier';
import globals from 'globals';
import tseslint from 'typescript-eslint';

const PRISMA_FILES = ['src/**/*.repository.ts', 'src/database/**', 'src/generated/**'];
const S3_FILES = ['src/artifacts/s3-artifact-store.ts'];
const GRAPH_FILES = ['src/graph/**'];
const prisma = [
  { group: ['**/database/prisma.service.js'], message: 'Only *.repository.ts files may use Prisma.' },
  { group: ['**/generated/prisma/*'], message: 'Only *.repository.ts files may use Prisma types.' },
  { group: ['pg', 'pg/*'], message: 'Only *.repository.ts files (through PrismaService.pool) may use pg.' },
];
const s3 = [
  { group: ['@aws-sdk/*'], message: 'Only src/artifacts/s3-artifact-store.ts may use the S3 client.' },
];
const graph = [{ group: ['neo4j-driver'], message: 'Only src/graph/ may use neo4j-driver.' }];

function restrictImports(files, ignores, groups) {
  return [{ files, ignores, rules: { 'no-restricted-imports': ['error', { patterns: groups.flat() }] } }];
}

export default tseslint.config(
  {
    ignores: [
      'dist/**',
      'bench/dist/**',
      'coverage/**',
      'src/generated/**',
      'node_modules/**',
      '.workspace/**',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      globals: { ...globals.node },
      parserOptions: {
        projectService: {
          allowDefaultProject: ['*.js', '*.mjs', 'prisma.config.ts', 'scripts/*.mjs', 'test/setup/*.mjs'],
        },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/require-await': 'off',
      '@typescript-eslint/no-extraneous-class': 'off',
    },
  },
  // Side-effect edges stay in their own files: Prisma in *.repository.ts, S3 in the S3 artifact store,
  // Neo4j in src/graph/.
  ...restrictImports(['src/**/*.ts'], [PRISMA_FILES, S3_FILES, GRAPH_FILES].flat(), [prisma, s3, graph]),
  ...restrictImports(PRISMA_FILES, [], [s3, graph]),
  ...restrictImports(S3_FILES, [], [prisma, graph]),
  ...restrictImports(GRAPH_FILES, [], [prisma, s3]),
  {
    files: ['**/*.js', '**/*.mjs'],
    ...tseslint.configs.disableTypeChecked,
  },
  prettier,
);
