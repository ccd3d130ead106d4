import { Controller, Get, Inject, Param, ParseUUIDPipe, Query } from '@nestjs/common';
import {
  ApiBearerAuth,
  ApiOkResponse,
  ApiOperation,
  ApiServiceUnavailableResponse,
  ApiTags,
} from '@nestjs/swagger';
import { CurrentTenant } from '../tenancy/auth.decorators.js';
import type { TenantContext } from '../tenancy/tenancy.types.js';
import { GRAPH_READER, type GraphReader } from './graph-reader.js';
import {
  BranchCommitsQuery,
  BranchCommitsView,
  CoChangedFilesQuery,
  CoChangedFilesView,
  ContributorListView,
  FileHistoryView,
  FilePathQuery,
  GraphListQuery,
  GraphRepositorySummaryView,
} from './graph.dto.js';

const uuid = new ParseUUIDPipe({ version: '4' });
const DEFAULT_LIMIT = 20;
const DEFAULT_MAX_FILES_PER_COMMIT = 200;

/** Read API over the graph index; every query is scoped to the calling tenant. */
@ApiTags('graph')
@ApiBearerAuth()
@ApiServiceUnavailableResponse({
  description: 'The graph index is disabled (NEO4J_URI unset) or unreachable',
})
@Controller('repositories/:id/graph')
export class GraphController {
  constructor(@Inject(GRAPH_READER) private readonly reader: GraphReader) {}

  @Get()
  @ApiOperation({ summary: "Counts and branches of the repository's graph" })
  @ApiOkResponse({ type: GraphRepositorySummaryView })
  async summary(
    @CurrentTenant() ctx: TenantContext,
    @Param('id', uuid) id: string,
  ): Promise<GraphRepositorySummaryView> {
    return this.reader.summary(ctx.tenantId, id);
  }

  @Get('contributors')
  @ApiOperation({ summary: 'People who authored the most commits' })
  @ApiOkResponse({ type: ContributorListView })
  async contributors(
    @CurrentTenant() ctx: TenantContext,
    @Param('id', uuid) id: string,
    @Query() query: GraphListQuery,
  ): Promise<ContributorListView> {
    const items = await this.reader.topContributors(ctx.tenantId, id, {
      limit: query.limit ?? DEFAULT_LIMIT,
    });
    return { items };
  }

  @Get('file-history')
  @ApiOperation({ summary: 'Commits that changed a file, newest first, with their authors' })
  @ApiOkResponse({ type: FileHistoryView })
  async fileHistory(
    @CurrentTenant() ctx: TenantContext,
    @Param('id', uuid) id: string,
    @Query() query: FilePathQuery,
  ): Promise<FileHistoryView> {
    const items = await this.reader.fileHistory(ctx.tenantId, id, query.path, {
      limit: query.limit ?? DEFAULT_LIMIT,
    });
    return { path: query.path, items };
  }

  @Get('co-changed-files')
  @ApiOperation({ summary: 'Files most often changed in the same commits as a file' })
  @ApiOkResponse({ type: CoChangedFilesView })
  async coChangedFiles(
    @CurrentTenant() ctx: TenantContext,
    @Param('id', uuid) id: string,
    @Query() query: CoChangedFilesQuery,
  ): Promise<CoChangedFilesView> {
    const items = await this.reader.coChangedFiles(ctx.tenantId, id, query.path, {
      limit: query.limit ?? DEFAULT_LIMIT,
      maxFilesPerCommit: query.maxFilesPerCommit ?? DEFAULT_MAX_FILES_PER_COMMIT,
    });
    return { path: query.path, items };
  }

  @Get('branch-commits')
  @ApiOperation({ summary: "Commits on a branch since a commit (git's since..branch), newest first" })
  @ApiOkResponse({ type: BranchCommitsView })
  async branchCommits(
    @CurrentTenant() ctx: TenantContext,
    @Param('id', uuid) id: string,
    @Query() query: BranchCommitsQuery,
  ): Promise<BranchCommitsView> {
    const page = await this.reader.branchCommits(ctx.tenantId, id, query.branch, query.since ?? null, {
      limit: query.limit ?? DEFAULT_LIMIT,
    });
    return {
      branch: page.branch,
      headSha: page.headSha,
      deleted: page.deleted,
      since: page.since,
      items: page.commits,
    };
  }
}
